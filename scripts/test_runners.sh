#!/usr/bin/env bash
# Run the tests on each runner in turn, staging what each needs first.
#
#   scripts/test_runners.sh                          # prism flink_local spark_local flink_cluster+spark_cluster
#   scripts/test_runners.sh prism flink_local        # just these
#   scripts/test_runners.sh flink_cluster+spark_cluster   # these two at the same time
#   scripts/test_runners.sh --stage_only prism flink_local  # build/stage what they need, no tests
#   FULL_SUITE_ON="prism flink_local" scripts/test_runners.sh   # whole suite on these two
#
# What runs where (CI's budget is 60 minutes from an empty HOME; see README
# "Runners" and BENCHMARKS.md "CI from an empty HOME"):
#   - the runners in $FULL_SUITE_ON (default: prism) run every test that uses the
#     runner (pytest deselects the pure-function tests, which the DirectRunner
#     suite runs; the S3 store suite excepted: $FULL_SUITE_TESTS);
#   - every cross-runner test (marked `cross_runner`: stores byte-identical to the
#     DirectRunner's, equal counters, failures in one line, the runner-sensitive paths)
#     runs on each engine, Flink and Spark, once: the ones marked `standalone_cluster`
#     (the identity of the jobs' stores whole / partitioned / removed / arrays, a failure
#     in one line, read-back with fail-over, progress) on the standalone clusters
#     ($CLUSTER_TESTS), the others (side inputs and gates, audited joins, packed types,
#     Parquet, filters, split inputs, convergence failure) on the embedded configs
#     flink_local and spark_local ($RUNNER_TESTS; e.g. RUNNER_TESTS="tests -m
#     cross_runner" runs them all there too);
#   - a suite runs on pytest-xdist workers (`-n $XDIST`, default auto: tests/conftest.py
#     says how many; Prism `-n $PRISM_XDIST`, default 2), except on the clusters, whose
#     EXTERNAL worker pool has a fixed port per run config (`-n 0`); runners joined
#     by `+` run at the same time (the two clusters use different ports), each
#     suite's output printed when it ends;
#   - the S3 store tests (tests/test_s3_store.py, SeaweedFS started by the tests) run
#     on direct (.ci/run); a server that cannot start fails them (never a skip).
#
# Uses `python` on PATH (activate the project's venv first).  Prism is built from
# the Go module proxy, job servers staged from Maven Central, Flink and Spark
# distributions from PyPI (all cached under ~/.apache_beam/cache).  A cluster is
# started before its suite and stopped after it.  Any failure,
# including a runner that cannot start, fails the script and prints one line that
# says how to reproduce it; a table of wall times per step is printed at the end.
# A suite that hangs (e.g. a job waiting for an SDK worker that never comes) is
# stopped after $SUITE_TIMEOUT seconds and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/steps.sh
stage_only=""
if [[ "${1:-}" == "--stage_only" ]]; then stage_only=1; shift; fi
groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(prism flink_local spark_local flink_cluster+spark_cluster)
read -r -a runners <<< "$(echo "${groups[*]}" | tr '+' ' ')"
export PYTHON=${PYTHON:-python}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-3600}
FULL_SUITE_ON=${FULL_SUITE_ON:-prism}
RUNNER_TESTS=${RUNNER_TESTS:-'tests -m "cross_runner and not standalone_cluster"'}
CLUSTER_TESTS=${CLUSTER_TESTS:-tests -m standalone_cluster}
# the S3 store suite (a SeaweedFS server per module, 3.5-7 min on Prism) runs on direct:
# the store's S3 paths (lock, compare-and-swap commit) run in the driver and in
# LOOPBACK workers of the same process, as on direct
FULL_SUITE_TESTS=${FULL_SUITE_TESTS:-tests --ignore=tests/test_s3_store.py}
XDIST=${XDIST:-auto}

workers() {  # pytest-xdist workers for one runner
  # the clusters: one EXTERNAL worker pool port per run config.  Prism: 2 (its jobs
  # at once lost a bundle's counters until scripts/prism_patches/0001-* fixed Beam's
  # metrics short-id race; one test at a time used ~0.7 of a core)
  case "$1" in *_cluster) echo 0 ;; prism) echo "${PRISM_XDIST:-2}" ;; *) echo "$XDIST" ;; esac
}
suite() {  # suite RUN_CONFIG PYTEST ARGS...
  timeout "$SUITE_TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider -n "$(workers "$1")" \
    --durations=15 "${@:2}" --run_config "$1"
}
tests_for() {  # the pytest arguments for one runner
  if [[ " $FULL_SUITE_ON " == *" $1 "* ]]; then echo "$FULL_SUITE_TESTS"
  elif [[ "$1" == *_cluster ]]; then echo "$CLUSTER_TESTS"
  else echo "$RUNNER_TESTS"; fi
}

needs() { [[ " ${runners[*]} " == *" $1"* ]]; }
cleanup() {  # a script stopped midway leaves no cluster running (stop is idempotent)
  local runner
  for runner in "${runners[@]}"; do
    [[ "$runner" != *_cluster ]] || "scripts/${runner%_cluster}_cluster.sh" stop >/dev/null 2>&1 || true
  done
}
[[ -n "$stage_only" ]] || trap cleanup EXIT

# Without its artifacts no runner can run: stop here.
if needs prism; then
  step "build prism" "scripts/build_prism.sh" scripts/build_prism.sh || summary
fi
if needs flink || needs spark; then
  only=()
  needs flink && only+=(--only flink)
  needs spark && only+=(--only spark)
  step "stage jars" "python scripts/stage_jars.py ${only[*]}" \
    "$PYTHON" scripts/stage_jars.py "${only[@]}" || summary
fi

if [[ -n "$stage_only" ]]; then summary; exit 0; fi   # summary exits only on a failure when nested

# Each runner's suite runs even if an earlier one failed; the script fails at the end.
run_one() {  # run_one RUNNER: its suite (a cluster started before and stopped after it)
  local runner=$1 cluster args repro
  eval "args=($(tests_for "$runner"))"   # a selection may quote a -m expression
  repro="python -m pytest -q -n $(workers "$runner") $(printf '%q ' "${args[@]}")--run_config $runner"
  case "$runner" in
    flink_cluster|spark_cluster)
      cluster=${runner%_cluster}
      if step "start $cluster cluster" "scripts/${cluster}_cluster.sh start" \
          "scripts/${cluster}_cluster.sh" start; then
        step "tests on $runner" "scripts/${cluster}_cluster.sh start && $repro" \
          suite "$runner" "${args[@]}" || true
      fi
      step "stop $cluster cluster" "scripts/${cluster}_cluster.sh stop" \
        "scripts/${cluster}_cluster.sh" stop || true
      ;;
    *)
      step "tests on $runner" "$repro" suite "$runner" "${args[@]}" || true
      ;;
  esac
}
for group in "${groups[@]}"; do
  if [[ "$group" != *+* ]]; then
    run_one "$group"
    continue
  fi
  read -r -a together <<< "$(echo "$group" | tr '+' ' ')"
  pids=() logs=()
  for runner in "${together[@]}"; do
    logs+=("$(mktemp "${TMPDIR:-/tmp}/beam-dataprep-$runner.XXXXXX")")
    run_one "$runner" > "${logs[-1]}" 2>&1 &
    pids+=($!)
  done
  for i in "${!together[@]}"; do
    wait "${pids[$i]}" || true
    echo "=== (at the same time as the others of $group) ${together[$i]}" >&2
    cat "${logs[$i]}" >&2
    rm -f "${logs[$i]}"
  done
done
summary
