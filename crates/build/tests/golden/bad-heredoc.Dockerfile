FROM busybox
RUN echo fine
COPY <<EOF /x
never closed
