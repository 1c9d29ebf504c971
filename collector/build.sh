#!/usr/bin/env bash
# Builds the CUGAr collector distribution from collector/manifest.yaml with the OpenTelemetry
# Collector Builder (ocb). The build is cached outside the work tree, keyed by the manifest's
# hash and the builder version, so fresh clones reuse it; collector/_build/cugar-otelcol links
# to the cached binary. Prints the binary's path on the last line.
set -euo pipefail
BUILDER_VERSION=v0.161.0
here="$(cd "$(dirname "$0")" && pwd)"
key="$(cat "$here/manifest.yaml" <(echo "$BUILDER_VERSION") | sha256sum | cut -c1-16)"
cache="${CUGAR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cugar}/collector/$key"
bin="$cache/cugar-otelcol"
link="$here/_build/cugar-otelcol"

if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { echo "collector: Go toolchain not found; cannot build the collector" >&2; exit 3; }
  builder="$(go env GOPATH)/bin/builder"
  if [[ ! -x "$builder" ]] || ! "$builder" version 2>/dev/null | grep -q "${BUILDER_VERSION#v}"; then
    echo "collector: installing OpenTelemetry Collector Builder $BUILDER_VERSION" >&2
    GOFLAGS=-buildvcs=false go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
  fi
  echo "collector: building into $cache (first build takes a few minutes)" >&2
  mkdir -p "$cache"
  sed "s#^\(  output_path:\).*#\1 $cache/src#" "$here/manifest.yaml" > "$cache/manifest.yaml"
  GOFLAGS="-buildvcs=false" "$builder" --config "$cache/manifest.yaml" >&2
  mv "$cache/src/cugar-otelcol" "$bin.tmp" && mv "$bin.tmp" "$bin"
fi
mkdir -p "$here/_build"
ln -sfn "$bin" "$link"
echo "$link"
