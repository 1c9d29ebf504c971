#!/usr/bin/env bash
# The main job (`make run`): install what is needed, then run the pipeline with a simulated
# CUGAr agent workload and a live terminal summary of the golden signals. Ctrl-C stops it.
# Extra arguments go to `python -m services.stack.run` (try --help).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/python" -m services.stack.run "$@"
