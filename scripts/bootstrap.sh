#!/usr/bin/env bash
# Installs everything the pipeline and its tests need, from the project's own files:
# Debian packages (docker-compose, Chromium), a Python virtualenv with the project's
# dependencies, our collector build and the pinned Prometheus, Alertmanager and Jaeger
# (components/build.sh, from their Go modules), telemetrygen for the pipeline benchmark and
# Thanos for the scale-out topology (docs/scaling.md), kubeconform for its Kubernetes manifests.
# Idempotent and cached outside the work tree.
# In CI (CI=true) any missing piece is an error; elsewhere it is a warning.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
strict=${CI:-false}
warn_or_die() { if [[ "$strict" == "true" ]]; then echo "bootstrap: ERROR: $*" >&2; exit 1; else echo "bootstrap: warning: $*" >&2; fi; }

# --- Debian packages ---------------------------------------------------------------------
declare -A pkg_for=([docker-compose]=docker-compose [chromium]=chromium [patch]=patch)
missing=()
for cmd in "${!pkg_for[@]}"; do command -v "$cmd" >/dev/null || missing+=("${pkg_for[$cmd]}"); done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    warn_or_die "missing Debian packages (${missing[*]}); install them with apt-get as root"
  fi
fi

# --- Python virtualenv -------------------------------------------------------------------
venv="$root/.venv"
stamp="$venv/.deps.sha256"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "bootstrap: installing Python dependencies into .venv"
  python="${PYTHON:-python3}"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "bootstrap: ERROR: $python is older than Python 3.11 (set PYTHON=...)" >&2; exit 1; }
  # Rebuilt from scratch so a failed or older build never leaves a half-changed .venv behind.
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian's python3 needs python3-venv for ensurepip.
    rm -rf "$venv"
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    "$python" -m venv "$venv"
  fi
  "$venv/bin/pip" install -q -U pip
  "$venv/bin/pip" install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

# --- Go builds (cached outside the work tree; Go is needed only on a cache miss) ------------
# A cold machine compiles each once (about 25 minutes in all on 2 cores, with a progress line).
bash collector/build.sh >/dev/null ||
  warn_or_die "the collector could not be built (see above; the run command falls back to embedded mode)"
bash components/build.sh ||
  warn_or_die "Prometheus, Alertmanager or Jaeger could not be built (see above; the run command falls back to embedded mode)"
# The pipeline benchmark's load generator (tests/test_bench_pipeline.py runs it; 80 s with a warm Go
# build cache, about 3 min cold).
bash components/build.sh telemetrygen ||
  warn_or_die "telemetrygen could not be built (see above; only bench/pipeline.py needs it)"
# The scale-out store (docs/scaling.md; tests/test_scale_topology.py runs it; about 10 min cold).
bash components/build.sh thanos ||
  warn_or_die "Thanos could not be built (see above; only the scale-out topology needs it)"
# The Kubernetes manifests' validator and the pinned Kubernetes API's schemas (docs/kubernetes.md;
# tests/test_k8s_*.py; about 30 s cold, seconds with a warm Go build cache).
bash components/build.sh kubeconform ||
  warn_or_die "kubeconform could not be built (see above; only the Kubernetes manifest tests need it)"
echo "bootstrap: ready"
