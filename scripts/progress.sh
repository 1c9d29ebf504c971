# Shared by the build scripts (sourced): a cold build's progress line and quiet logs.
# Callers define `say` and set `build_log`.
# Runs "$@" with its output in $build_log and a heartbeat line every 30 s, so a cold build
# never looks hung; on failure the log's tail is printed.
with_progress() {
  local what="$1"; shift
  local start=$SECONDS
  ( while sleep 30; do say "$what: still building ($(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s)"; done ) &
  local beat=$!
  local rc=0
  "$@" >>"$build_log" 2>&1 || rc=$?
  kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null || true
  if ((rc == 0)); then say "$what: done in $(( SECONDS - start ))s"
  else say "$what: FAILED (exit $rc); last lines of $build_log:"; tail -n 40 "$build_log" >&2; fi
  return "$rc"
}
