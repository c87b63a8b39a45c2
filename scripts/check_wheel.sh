#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv outside the checkout, and run the
# main job and verify_store from an empty temporary folder, as a user who ran
# `pip install beam-dataprep-*.whl` would.  Fails (exit 1) on the first step
# that does not work.
#
#   scripts/check_wheel.sh            (uses python3 on PATH for the new venv)
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/beam-dataprep-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
log() { echo "check_wheel: $*" >&2; }

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$checkout"
wheel=$(ls "$work"/dist/beam_dataprep-*.whl)
log "built $(basename "$wheel")"
"$work/venv/bin/pip" install -q "$wheel"
mkdir "$work/run"
cd "$work/run"
export PATH="$work/venv/bin:$PATH"
[[ "$(command -v dataprep)" == "$work/venv/bin/dataprep" ]]
version=$(dataprep --version)
log "$version"
dataprep list
# the job-server staging ships in the wheel (flink_local/spark_local from any folder)
dataprep stage-jars --help > /dev/null
python -c "import importlib.resources as r; assert (r.files('pipelines') / 'java' / 'PrestagedFlinkJobServer.java').is_file()"
# The shipped run configs resolve from any folder (package data).
python - <<'PY'
from pipelines import run_config
for name in ("direct", "direct_multiprocess", "prism", "flink_local", "spark_local",
             "flink_cluster", "spark_cluster"):
    run_config.load(name)
PY
# The public transforms (examples/ and the README use them) import from the wheel.
imported=$(python -c "from transforms import DedupRecords, NearDedupRecords, WriteRecords, ReadStore, PrepareCorpus" 2>&1)
[[ -z "$imported" ]] || { echo "check_wheel: importing the transforms printed: $imported" >&2; exit 1; }
dataprep prepare-corpus > prepare.log
dataprep verify-store --store out/a/corpus > verify.log
tail -n 1 verify.log
# The run report page comes from the templates shipped as package data.
grep -q '<svg id="removal-chart"' out/a/corpus/_audit/run_report.html
rm out/b/corpus/_audit/run_report.html
dataprep report out/b/corpus > report.log
cmp out/a/corpus/_audit/run_report.html out/b/corpus/_audit/run_report.html
python -m pipelines.prepare_corpus --run_config direct --dataset again > again.log
python -m pipelines.verify_store --store out/b/again > verify-again.log
# Nothing was read from or written into the checkout.
python - "$checkout" <<'PY'
import sys, pipelines, transforms
for module in (pipelines, transforms):
    assert not module.__file__.startswith(sys.argv[1]), module.__file__
PY
log "ok: the wheel runs prepare-corpus and verify-store from $work/run"
