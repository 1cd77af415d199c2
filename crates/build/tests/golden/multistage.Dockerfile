# syntax=docker/dockerfile:1
ARG BASE=busybox
ARG VERSION
FROM --platform=$BUILDPLATFORM ${BASE}:latest AS Build
ARG VERSION=1.0
ENV GREETING="hello world" TARGET=/out
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache --network=none \
    echo "$GREETING $VERSION" > /src/msg && \
    cp /src/msg $TARGET
FROM ${BASE}
COPY --from=build --chown=1000:1000 --chmod=0644 /out /app/msg
COPY --from=alpine:3 /etc/os-release /
CMD ["cat", "/app/msg"]
