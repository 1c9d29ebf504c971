# The CUGAr collector distribution, built from collector/manifest.yaml with the OpenTelemetry
# Collector Builder (the same manifest and builder version as collector/build.sh).
# Build context: the repository root (docker-compose.yml sets it).

FROM golang:1.26-bookworm AS build
ARG BUILDER_VERSION=v0.161.0
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
RUN go install "go.opentelemetry.io/collector/cmd/builder@${BUILDER_VERSION}"
WORKDIR /build
COPY collector/manifest.yaml ./manifest.yaml
# Our own components (local Go modules; the manifest's `path:` is relative to this directory).
COPY collector/cardinalityguard ./cardinalityguard
COPY collector/sensitiveattributes ./sensitiveattributes
RUN builder --config manifest.yaml && test -x _build/cugar-otelcol

FROM alpine:3.22
# busybox wget is what the compose health check uses.
RUN adduser -D -H -u 10001 otelcol \
 && mkdir -p /var/lib/otelcol/file_storage && chown 10001 /var/lib/otelcol/file_storage
COPY --from=build /build/_build/cugar-otelcol /usr/local/bin/cugar-otelcol
COPY otel-collector-config.yaml /etc/cugar/otel-collector-config.yaml
USER 10001
# OTLP gRPC, OTLP HTTP, Prometheus exporter, self-telemetry, health check
EXPOSE 4317 4318 8889 8888 13133
ENTRYPOINT ["/usr/local/bin/cugar-otelcol"]
CMD ["--config", "/etc/cugar/otel-collector-config.yaml"]
