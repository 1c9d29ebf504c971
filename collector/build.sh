#!/usr/bin/env bash
# Builds the CUGAr collector distribution from collector/manifest.yaml with the OpenTelemetry
# Collector Builder (ocb). The build is cached outside the work tree, keyed by the manifest's
# hash, the builder version and the sources of our own components (collector/cardinalityguard, collector/sensitiveattributes,
# tests excluded), so fresh clones reuse it; collector/_build/cugar-otelcol links
# to the cached binary. Prints the binary's path on the last line.
set -euo pipefail
BUILDER_VERSION=v0.161.0
here="$(cd "$(dirname "$0")" && pwd)"
local_sources() {
  (cd "$here" && find cardinalityguard sensitiveattributes -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) \
    | LC_ALL=C sort | xargs sha256sum)
}
key="$(cat "$here/manifest.yaml" <(echo "$BUILDER_VERSION") <(local_sources) | sha256sum | cut -c1-16)"
cache="${CUGAR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cugar}/collector/$key"
bin="$cache/cugar-otelcol"
link="$here/_build/cugar-otelcol"

say() { echo "collector: $*" >&2; }
# shellcheck source=../scripts/progress.sh
source "$here/../scripts/progress.sh"

if [[ ! -x "$bin" ]]; then
  command -v go >/dev/null || { say "Go toolchain not found; cannot build the collector"; exit 3; }
  mkdir -p "$cache"
  build_log="$cache/build.log"
  : > "$build_log"
  say "cold build of cugar-otelcol (OCB $BUILDER_VERSION) into $cache (about 4 min cold on 2 cores)"
  builder="$(go env GOPATH)/bin/builder"
  if [[ ! -x "$builder" ]] || ! "$builder" version 2>/dev/null | grep -q "${BUILDER_VERSION#v}"; then
    GOFLAGS=-buildvcs=false with_progress "OpenTelemetry Collector Builder $BUILDER_VERSION (go install)" \
      go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
  fi
  sed "s#^\(  output_path:\).*#\1 $cache/src#" "$here/manifest.yaml" > "$cache/manifest.yaml"
  # Local modules (`path:` in the manifest) are relative to collector/: ocb runs from there.
  (cd "$here" && GOFLAGS="-buildvcs=false" with_progress "cugar-otelcol (ocb + go build)" \
    "$builder" --config "$cache/manifest.yaml")
  mv "$cache/src/cugar-otelcol" "$bin.tmp" && mv "$bin.tmp" "$bin"
fi
mkdir -p "$here/_build"
ln -sfn "$bin" "$link"
echo "$link"
