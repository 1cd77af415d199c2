FROM scratch AS base
ENV PATH /usr/local/bin:$PATH
ENV A=1 B="two words" C=three\ words
LABEL org.opencontainers.image.title="skiff test" version=1
MAINTAINER someone <someone@example.com>
EXPOSE 80/tcp 443 53/udp
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
USER nobody:nogroup
WORKDIR $HOME/app
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/entry.sh"]
CMD echo shell form
HEALTHCHECK --interval=5s --retries=3 CMD wget -qO- http://localhost/ || exit 1
ONBUILD COPY . /app/src
ONBUILD run echo lower-case keyword
add --chown=app --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/a.tar.gz /a/
ADD --link --exclude=*.md --exclude=.git ["src dir/", "/dst dir/"]
COPY --parents ./a/*.txt ./b/ /out/
HEALTHCHECK NONE
ARG one=1 two
