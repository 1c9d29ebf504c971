# Thanos (receive, query, rule) for the scale-out stack (docs/scaling.md): the release pinned in
# components/versions.env, from its Go module, with the same patch and build tags as
# components/build.sh (query and rule take --enable-feature=promql-extended-range-selectors, which
# our rules' `anchored` needs; upstream's image does not have it).
# Build context: the repository root (docker-compose.scale.yml sets it).

FROM golang:1.26-bookworm AS build
ARG THANOS_MODULE=github.com/thanos-io/thanos@v0.42.4
ENV CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" GOTOOLCHAIN=local
WORKDIR /build
COPY components/patches/thanos-extended-range-selectors.patch /build/thanos.patch
RUN apt-get update -qq && apt-get install -y -qq patch >/dev/null \
 && dir="$(cd "$(mktemp -d)" && go mod download -json "$THANOS_MODULE" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')" \
 && cp -r "$dir" src && chmod -R u+w src && cd src && patch -s -p1 < /build/thanos.patch \
 && go build -tags netgo,slicelabels -o /build/thanos ./cmd/thanos

FROM alpine:3.22
# busybox wget is what the compose health checks and Kubernetes probes use.
RUN adduser -D -H -u 10001 thanos && mkdir -p /var/thanos && chown 10001 /var/thanos
COPY --from=build /build/thanos /usr/local/bin/thanos
USER 10001
# gRPC (store API), HTTP (API, /-/ready), remote write, Cap'n Proto replication
EXPOSE 10901 10902 19291 19391
ENTRYPOINT ["/usr/local/bin/thanos"]
