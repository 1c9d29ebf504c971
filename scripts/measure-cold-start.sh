#!/usr/bin/env bash
# What a newcomer waits on a fresh machine: a fresh clone of this repository, with empty Go, npm,
# pnpm, pip and component caches (all under a scratch directory), runs `make run --duration 40`
# (or, with `test`, what CI runs: `CI=true make test`); every line is stamped with the seconds
# since the start. The README's timings come from this.
#   bash scripts/measure-cold-start.sh [SCRATCH_DIR] [run|test]   (default /tmp/cugar-cold, run;
#                                                                   the directory is wiped first)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="${1:-/tmp/cugar-cold}"
target="${2:-run}"
case "$target" in
  run) command=(make run ARGS="--duration 40") ;;
  test) export CI=true; command=(make test) ;;
  *) echo "measure-cold-start.sh: the target is run or test, not '$target'" >&2; exit 2 ;;
esac
rm -rf "$scratch" && mkdir -p "$scratch"
git clone -q "$root" "$scratch/repo"
export CUGAR_CACHE_DIR="$scratch/cugar" GOCACHE="$scratch/gocache" GOMODCACHE="$scratch/gomod" \
  GOPATH="$scratch/gopath" npm_config_cache="$scratch/npm" XDG_DATA_HOME="$scratch/xdg" \
  PIP_CACHE_DIR="$scratch/pip"
cd "$scratch/repo"
start=$(date +%s.%N)
set +e
"${command[@]}" 2>&1 | while IFS= read -r line; do
  printf '%7.1f %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$line"
done
status=${PIPESTATUS[0]}
echo "exit status: $status"
exit "$status"
