#!/usr/bin/env bash
# Run the test suite on each runner in turn, staging what each needs first.
#
#   scripts/test_runners.sh                          # prism flink_local spark_local flink_cluster spark_cluster
#   scripts/test_runners.sh prism flink_local        # just these
#
# Uses `python` on PATH (activate the project's venv first).  Prism is built from
# the Go module proxy, job servers staged from Maven Central, Flink and Spark
# distributions from PyPI (all cached under ~/.apache_beam/cache).  Clusters are
# started before their suite and stopped after it, one at a time.  Any failure,
# including a runner that cannot start, fails the script; a table of wall times
# per runner is printed at the end.  A suite that hangs (e.g. a job waiting for an
# SDK worker that never comes) is stopped after $SUITE_TIMEOUT seconds and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
runners=("$@")
[[ ${#runners[@]} -gt 0 ]] || runners=(prism flink_local spark_local flink_cluster spark_cluster)
export PYTHON=${PYTHON:-python}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-2400}
# Every runner runs the whole pipeline suite; CLUSTER_TESTS narrows it on the
# standalone clusters (e.g. CLUSTER_TESTS=tests/test_runners.py for the
# cross-runner tests only) and takes extra pytest flags ("tests --durations=15").
CLUSTER_TESTS=${CLUSTER_TESTS:-tests}
suite() {  # suite RUN_CONFIG [TEST PATHS]
  timeout "$SUITE_TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider "${@:2}" --run_config "$1"
}

needs() { [[ " ${runners[*]} " == *" $1"* ]]; }
cluster=""
cleanup() { [[ -z "$cluster" ]] || "scripts/${cluster}_cluster.sh" stop || true; }
trap cleanup EXIT

timings=()
failed=()
step() {  # step NAME COMMAND...: run and time one step; a failure is recorded, not fatal
  local name=$1; shift
  local t0=$SECONDS rc=0
  echo "=== $name: $*" >&2
  "$@" || rc=$?
  timings+=("$(printf '%-28s %5ds  %s' "$name" $((SECONDS - t0)) "$([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)")")")
  [[ $rc == 0 ]] || failed+=("$name")
  return $rc
}

summary() {
  echo "=== wall time per step" >&2
  printf '%s\n' "${timings[@]}" >&2
  if [[ ${#failed[@]} -gt 0 ]]; then echo "FAILED: ${failed[*]}" >&2; exit 1; fi
}

# Without its artifacts no runner can run: stop here.
if needs prism; then step "build prism" scripts/build_prism.sh || summary; fi
if needs flink || needs spark; then
  only=()
  needs flink && only+=(--only flink)
  needs spark && only+=(--only spark)
  step "stage jars" "$PYTHON" scripts/stage_jars.py "${only[@]}" || summary
fi

# Each runner's suite runs even if an earlier one failed; the script fails at the end.
for runner in "${runners[@]}"; do
  case "$runner" in
    flink_cluster|spark_cluster)
      cluster=${runner%_cluster}
      if step "start $cluster cluster" "scripts/${cluster}_cluster.sh" start; then
        # shellcheck disable=SC2086 # a list of test paths
        step "tests on $runner" suite "$runner" $CLUSTER_TESTS || true
      fi
      step "stop $cluster cluster" "scripts/${cluster}_cluster.sh" stop || true
      cluster=""
      ;;
    *)
      step "tests on $runner" suite "$runner" tests || true
      ;;
  esac
done
summary
