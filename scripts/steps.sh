# Timed steps shared by .ci/run and scripts/test_runners.sh (sourced, not run).
#
#   step NAME REPRO COMMAND...   run COMMAND, time it, record "ok" or "FAILED (rc)";
#                                on failure print one line: what failed and REPRO,
#                                the command that reproduces it locally
#   background NAME REPRO COMMAND...
#                                the same, in the background: its output goes to a
#                                log of its own, printed by `await NAME`
#   await NAME                   wait for it, print its log; returns its status
#   summary                      in the outermost script: print the table of every
#                                step recorded in $STEP_LOG (shared by nested
#                                scripts) and exit 1 if any failed; in a nested
#                                one: exit 1 if one of its own steps failed; the
#                                failed tests' lines (tests/conftest.py writes them to
#                                $DATAPREP_FAILED_TESTS) follow the table
#
# $STEP_LOG is created on first use and exported, so a script called from a
# step-running script adds its rows to the same table.
STEP_FAILED=0
STEP_LOG_OWNER=""
declare -A BG_PID BG_LOG
if [[ -z "${STEP_LOG:-}" ]]; then
  STEP_LOG=$(mktemp "${TMPDIR:-/tmp}/beam-dataprep-steps.XXXXXX")
  STEP_LOG_OWNER=1
  export STEP_LOG
  # tests/conftest.py appends each failed test here; summary repeats them at the end
  export DATAPREP_FAILED_TESTS="$STEP_LOG.tests"
fi

step() {
  local name=$1 repro=$2; shift 2
  local t0=$SECONDS rc=0
  echo "=== $name: $*" >&2
  "$@" || rc=$?
  local took=$((SECONDS - t0))
  if [[ $rc == 0 ]]; then
    printf '%-30s %6ds  ok\n' "$name" "$took" >> "$STEP_LOG"
  else
    printf '%-30s %6ds  FAILED (%d)\n' "$name" "$took" "$rc" >> "$STEP_LOG"
    printf 'FAILED: %s (exit %d) after %ds; reproduce with: %s\n' "$name" "$rc" "$took" "$repro" \
      | tee -a "$STEP_LOG.failures" >&2
    STEP_FAILED=$((STEP_FAILED + 1))
  fi
  return $rc
}

kill_tree() {  # kill_tree PID: the process and all its descendants (children first)
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null || true
}

summary() {  # the script that created $STEP_LOG prints the table; a nested one only exits
  local name
  for name in "${!BG_PID[@]}"; do   # a script stopped midway leaves no background step
    if kill -0 "${BG_PID[$name]}" 2>/dev/null; then
      echo "=== stopping the background step $name" >&2
      kill_tree "${BG_PID[$name]}"
    fi
  done
  if [[ -n "$STEP_LOG_OWNER" ]]; then
    echo "=== wall time per step" >&2
    cat "$STEP_LOG" >&2
    if [[ -s "$STEP_LOG.tests" ]]; then
      echo "=== failed tests ($(wc -l < "$STEP_LOG.tests") reports; the first 40)" >&2
      head -n 40 "$STEP_LOG.tests" >&2
    fi
    if [[ -s "$STEP_LOG.failures" ]]; then
      cat "$STEP_LOG.failures" >&2
      rm -f "$STEP_LOG" "$STEP_LOG.failures" "$STEP_LOG.tests"
      exit 1
    fi
    rm -f "$STEP_LOG" "$STEP_LOG.failures" "$STEP_LOG.tests"
  fi
  [[ $STEP_FAILED == 0 ]] || exit 1
}

background() {
  local name=$1
  BG_LOG[$name]=$(mktemp "${TMPDIR:-/tmp}/beam-dataprep-step.XXXXXX")
  ( step "$@" ) > "${BG_LOG[$name]}" 2>&1 &
  BG_PID[$name]=$!
}

await() {
  local name=$1 rc=0
  wait "${BG_PID[$name]}" || rc=$?
  echo "=== (background) $name" >&2
  cat "${BG_LOG[$name]}" >&2
  rm -f "${BG_LOG[$name]}"
  return $rc
}
