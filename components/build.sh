#!/usr/bin/env bash
# Builds the pipeline's third-party programs from their official Go modules, at the versions
# pinned in components/versions.env: prometheus + promtool, alertmanager + amtool, jaeger.
#
#   bash components/build.sh [prometheus|alertmanager|jaeger|telemetrygen|thanos|kubeconform ...]
#                                     (default: the first three; telemetrygen, the OpenTelemetry
#                                      load generator, only for the pipeline benchmark, and thanos,
#                                      the scale-out store of docs/scaling.md, on demand;
#                                      kubeconform, with the pinned Kubernetes API's schemas, for
#                                      the manifests of docs/kubernetes.md)
#
# Each build is cached outside the work tree, keyed by its pins and this script, in
# ${CUGAR_CACHE_DIR:-~/.cache/cugar}/<name>/<key>/; components/_build/<program> links to it, so
# fresh clones reuse it and only a cold machine compiles (Prometheus ~12 min, Jaeger ~8 min,
# Alertmanager ~3 min on 2 cores). The web UIs are built with npm from the sources in the same
# modules and embedded, as the upstream release builds do. A cold build prints a progress line
# every 30 s. Needs Go only on a cache miss (exit 3 when Go is missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache_root="${CUGAR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cugar}"
links="$here/_build"
export GOFLAGS="-buildvcs=false -mod=mod"
export GOTOOLCHAIN=local GOWORK=off

say() { echo "components: $*" >&2; }

# shellcheck source=../scripts/progress.sh
source "$here/../scripts/progress.sh"

# Copies a module's source out of the (read-only) module cache into a writable tree.
module_source() {
  local module="$1" dest="$2" dir
  dir="$(cd "$(mktemp -d)" && go mod download -json "$module" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || { say "could not download $module"; return 1; }
  rm -rf "$dest"; mkdir -p "$(dirname "$dest")"
  cp -r "$dir" "$dest"; chmod -R u+w "$dest"
}

# A build is keyed by its own pins and its recipe (the function that builds it), so editing one
# recipe or pin rebuilds only that component.
declare -A pins_of=([prometheus]="PROMETHEUS|PNPM" [alertmanager]="ALERTMANAGER" [jaeger]="JAEGER" [telemetrygen]="TELEMETRYGEN" [thanos]="THANOS" [kubeconform]="KUBECONFORM|KUBERNETES")
cache_key() {
  { grep -E "^(${pins_of[$1]})_" "$here/versions.env"; declare -f "recipe_$1" with_progress module_source prometheus_version_ldflags
    cat "$here/patches/$1"-*.patch "$here/$1"-*.py 2>/dev/null || true; } |
    sha256sum | cut -c1-16
}

# build NAME PROGRAM...: the cached build of NAME (made by recipe_NAME when missing), linked
# into components/_build. Concurrent runs (two clones, CI and a developer) take turns on a
# lock; a build goes to a scratch directory first, so a failed or interrupted one leaves no
# half-written program behind.
build() {
  local name="$1"; shift
  local out; out="$cache_root/$name/$(cache_key "$name")"
  local program missing=()
  for program in "$@"; do [[ -x "$out/$program" ]] || missing+=("$program"); done
  if ((${#missing[@]})); then
    mkdir -p "$cache_root/$name"
    exec {lock}>"$cache_root/$name/.lock"
    flock "$lock"
    missing=()
    for program in "$@"; do [[ -x "$out/$program" ]] || missing+=("$program"); done
    if ((${#missing[@]})); then
      require_go "$name"
      local work="$out.partial"
      rm -rf "$work" && mkdir -p "$work"
      build_log="$work/build.log"
      "recipe_$name" "$work"
      mkdir -p "$out"
      cp "$build_log" "$out/build.log"
      for program in "$@"; do mv "$work/$program" "$out/$program"; done
      rm -rf "$work"
    fi
    flock -u "$lock"
  fi
  mkdir -p "$links"
  for program in "$@"; do ln -sfn "$out/$program" "$links/$program"; done
}

require_go() {
  command -v go >/dev/null || { say "Go toolchain not found; cannot build $1 (see README, 'Components')"; exit 3; }
}

# The version stamp the Prometheus project's own release builds (promu) put into a binary.
prometheus_version_ldflags() {  # VERSION REVISION
  local v=github.com/prometheus/common/version
  echo "-X $v.Version=$1 -X $v.Revision=$2 -X $v.Branch=release -X $v.BuildUser=cugar@components -X $v.BuildDate=module"
}

recipe_prometheus() {  # recipe_prometheus WORKDIR: the programs into WORKDIR
  local out="$1" src="$1/src"
  say "prometheus: cold build of Prometheus $PROMETHEUS_VERSION with promtool and its web UI ($PROMETHEUS_MODULE, about 12 min cold on 2 cores)"
  module_source "$PROMETHEUS_MODULE" "$src"
  # The UI: the mantine-ui workspace, built with the pnpm its lockfile was made with, then
  # gzipped and embedded (the `builtinassets` tag), as upstream's `make assets-compress`.
  ( cd "$src/web/ui"
    npm_prefix="$cache_root/tools/pnpm-$PNPM_VERSION"
    [[ -x "$npm_prefix/bin/pnpm" ]] || with_progress "pnpm $PNPM_VERSION (npm install)" npm install --prefix "$npm_prefix" -g "pnpm@$PNPM_VERSION"
    export PATH="$npm_prefix/bin:$PATH" CI=true
    with_progress "prometheus web UI (pnpm install)" pnpm install --frozen-lockfile --silent 
    with_progress "prometheus web UI (vite build)" pnpm run -s build:mantine-ui )
  ( cd "$src" && with_progress "prometheus web UI (compress)" bash scripts/compress_assets.sh )
  rm -rf "$src/web/ui/node_modules" "$src/web/ui/mantine-ui/node_modules" "$src/web/ui/module"/*/node_modules
  # promtool 3.13's `test rules` ignores --enable-feature when it evaluates, so rule tests using
  # `anchored` fail; the 3.16 fix, backported (promtool only; the server is unchanged).
  ( cd "$src" && patch -s -p1 < "$here/patches/prometheus-promtool-anchored-eval.patch" )
  ( cd "$src" && with_progress "prometheus $PROMETHEUS_VERSION (go build)" go build -tags netgo,builtinassets \
      -ldflags "$(prometheus_version_ldflags "$PROMETHEUS_VERSION" "${PROMETHEUS_MODULE#*@}+promtool-anchored-eval")" \
      -o "$out/" ./cmd/prometheus ./cmd/promtool )
  rm -rf "$src"
}

recipe_alertmanager() {  # recipe_alertmanager WORKDIR: the programs into WORKDIR
  local out="$1" src="$1/src"
  say "alertmanager: cold build of Alertmanager $ALERTMANAGER_VERSION with amtool and its web UI ($ALERTMANAGER_MODULE, about 5 min on 2 cores)"
  module_source "$ALERTMANAGER_MODULE" "$src"
  # The Mantine UI (served at /ui/) builds with npm from its lockfile, except that
  # @mantine/code-highlight 9.7.3 is not served by the npm registry here: 9.6.2 (same major,
  # same API the UI uses) takes its place. The classic Elm UI cannot be built: the Elm compiler
  # fetches its packages from package.elm-lang.org, which is no registry this project may reach,
  # so its place at / is a page that redirects to the Mantine UI.
  ( cd "$src/ui/mantine-ui"
    with_progress "alertmanager web UI (npm install)" npm install --silent --no-audit --no-fund --save-exact @mantine/code-highlight@9.6.2 
    with_progress "alertmanager web UI (vite build)" npm run -s build )
  mkdir -p "$src/ui/app/dist/elm"
  printf '%s\n' '<!doctype html><meta http-equiv="refresh" content="0; url=ui/"><title>Alertmanager</title><a href="ui/">Alertmanager UI</a>' \
    | gzip -9n > "$src/ui/app/dist/elm/index.html.gz"
  rm -rf "$src/ui/mantine-ui/node_modules"
  ( cd "$src" && with_progress "alertmanager $ALERTMANAGER_VERSION (go build)" go build \
      -ldflags "$(prometheus_version_ldflags "$ALERTMANAGER_VERSION" "${ALERTMANAGER_MODULE#*@}")" \
      -o "$out/" ./cmd/alertmanager ./cmd/amtool )
  rm -rf "$src"
}

recipe_jaeger() {  # recipe_jaeger WORKDIR: the programs into WORKDIR
  local out="$1" src="$1/src"
  say "jaeger: cold build of Jaeger $JAEGER_VERSION ($JAEGER_MODULE cmd/jaeger, about 8 min on 2 cores)"
  # Built inside its own module: `go install pkg@version` refuses a go.mod with replace directives.
  module_source "$JAEGER_MODULE" "$src"
  ( cd "$src" && with_progress "jaeger $JAEGER_VERSION (go build)" go build \
      -ldflags "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v$JAEGER_VERSION -X github.com/jaegertracing/jaeger/internal/version.commitSHA=${JAEGER_MODULE#*@}" \
      -o "$out/jaeger" ./cmd/jaeger )
  rm -rf "$src"
}

recipe_telemetrygen() {  # recipe_telemetrygen WORKDIR: the program into WORKDIR
  local out="$1" src="$1/src"
  say "telemetrygen: cold build of telemetrygen $TELEMETRYGEN_VERSION ($TELEMETRYGEN_MODULE, about 3 min cold on 2 cores)"
  module_source "$TELEMETRYGEN_MODULE" "$src"
  ( cd "$src" && with_progress "telemetrygen $TELEMETRYGEN_VERSION (go build)" go build -o "$out/telemetrygen" . )
  rm -rf "$src"
}

recipe_thanos() {  # recipe_thanos WORKDIR: the program into WORKDIR
  local out="$1" src="$1/src"
  say "thanos: cold build of Thanos $THANOS_VERSION ($THANOS_MODULE cmd/thanos, about 10 min cold on 2 cores)"
  # Built inside its own module (its go.mod has replace directives). Patched so that query and
  # rule take Prometheus' --enable-feature=promql-extended-range-selectors (our rules' `anchored`).
  module_source "$THANOS_MODULE" "$src"
  ( cd "$src" && patch -s -p1 < "$here/patches/thanos-extended-range-selectors.patch" )
  # The tags of upstream's release build (.promu.yml); without slicelabels the receive nodes
  # panic (thanos#8543).
  ( cd "$src" && with_progress "thanos $THANOS_VERSION (go build)" go build -tags netgo,slicelabels \
      -ldflags "$(prometheus_version_ldflags "$THANOS_VERSION" "${THANOS_MODULE#*@}+extended-range-selectors")" \
      -o "$out/thanos" ./cmd/thanos )
  rm -rf "$src"
}

recipe_kubeconform() {  # recipe_kubeconform WORKDIR: the validator and the schemas into WORKDIR
  local out="$1" src="$1/src" spec
  say "kubeconform: cold build of kubeconform $KUBECONFORM_VERSION ($KUBECONFORM_MODULE, about 30 s cold on 2 cores) and the schemas of Kubernetes $KUBERNETES_VERSION ($KUBERNETES_MODULE api/openapi-spec/v3)"
  module_source "$KUBECONFORM_MODULE" "$src"
  ( cd "$src" && with_progress "kubeconform $KUBECONFORM_VERSION (go build)" go build \
      -ldflags "-X main.version=v$KUBECONFORM_VERSION" -o "$out/kubeconform" ./cmd/kubeconform )
  rm -rf "$src"
  # The schemas from the pinned Kubernetes release's own OpenAPI v3 spec (in its module), in
  # kubeconform's layout, by our converter (components/kubeconform-schemas.py, in the cache key).
  spec="$(cd "$(mktemp -d)" && go mod download -json "$KUBERNETES_MODULE" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')/api/openapi-spec/v3"
  [[ -d "$spec" ]] || { say "no OpenAPI v3 spec in $KUBERNETES_MODULE"; return 1; }
  with_progress "kubernetes $KUBERNETES_VERSION schemas" python3 "$here/kubeconform-schemas.py" \
    "$spec" "$KUBERNETES_VERSION" "$out/kubernetes-schemas"
}

targets=("$@")
((${#targets[@]})) || targets=(prometheus alertmanager jaeger)
for target in "${targets[@]}"; do
  case "$target" in
    prometheus) build prometheus prometheus promtool ;;
    alertmanager) build alertmanager alertmanager amtool ;;
    jaeger) build jaeger jaeger ;;
    telemetrygen) build telemetrygen telemetrygen ;;
    thanos) build thanos thanos ;;
    kubeconform) build kubeconform kubeconform kubernetes-schemas ;;
    *) say "unknown component '$target' (expected prometheus, alertmanager, jaeger, telemetrygen, thanos or kubeconform)"; exit 2 ;;
  esac
done
