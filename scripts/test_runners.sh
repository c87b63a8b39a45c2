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
SUITE_TIMEOUT=${SUITE_TIMEOUT:-1800}
suite() { timeout "$SUITE_TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider tests --run_config "$1"; }

needs() { [[ " ${runners[*]} " == *" $1"* ]]; }
cluster=""
cleanup() { [[ -z "$cluster" ]] || "scripts/${cluster}_cluster.sh" stop || true; }
trap cleanup EXIT

timings=()
step() {  # step NAME COMMAND...: run and time one step
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name: $*" >&2
  "$@"
  timings+=("$(printf '%-28s %5ds' "$name" $((SECONDS - t0)))")
}

needs prism && step "build prism" scripts/build_prism.sh
if needs flink || needs spark; then
  only=()
  needs flink && only+=(--only flink)
  needs spark && only+=(--only spark)
  step "stage jars" "$PYTHON" scripts/stage_jars.py "${only[@]}"
fi

for runner in "${runners[@]}"; do
  case "$runner" in
    flink_cluster|spark_cluster)
      cluster=${runner%_cluster}
      step "start $cluster cluster" "scripts/${cluster}_cluster.sh" start
      step "tests on $runner" suite "$runner"
      step "stop $cluster cluster" "scripts/${cluster}_cluster.sh" stop
      cluster=""
      ;;
    *)
      step "tests on $runner" suite "$runner"
      ;;
  esac
done

echo "=== wall time per step" >&2
printf '%s\n' "${timings[@]}" >&2
