"""Input files whose names hold glob characters (``[``, ``]``, ``*``, ``?``).

An input given by its exact name is that file, never a pattern: it is read,
its size is the progress display's total (so there is an ETA), and the
manifest and run report record it with its size and digest.  Each name comes
with a decoy file that the name, read as a pattern, would match instead.
"""
import os
import re
import subprocess
import sys

import orjson
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import prepare_corpus, progress
from transforms.processing.io import expand_patterns, input_files
from transforms.processing.parquet import corpus_paths
from transforms.storage.files import file_size
from transforms.storage.report import input_lineage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> a decoy the name matches as a glob (None: as a pattern it matches only itself)
NAMES = {
    "data[1].jsonl": "data1.jsonl",
    "data*.jsonl": "data-other.jsonl",
    "data?.jsonl": "dataX.jsonl",
    "data].jsonl": None,
    "data[.jsonl": None,
    "[ab]*?.jsonl": "ab.jsonl",
}


def _sample(lines: int) -> bytes:
    with open(prepare_corpus.SAMPLE, "rb") as f:
        return b"".join(f.read().splitlines(keepends=True)[:lines])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stem=st.text(alphabet="ab1[]*?-. ", min_size=1, max_size=12))
def test_an_exact_name_is_that_file_whatever_its_characters(tmp_path_factory, stem):
    """Property: for any name over an alphabet with every glob character, the
    exact name resolves to that file alone, with its own size (a decoy that the
    name matches as a pattern, the name with its glob characters dropped, is
    there and never taken)."""
    folder = tmp_path_factory.mktemp("names")
    name = f"{stem}.jsonl"
    path = folder / name
    path.write_bytes(b'{"id": 1, "text": "x"}\n')
    decoy = folder / (re.sub(r"[\[\]*?]", "", stem) + "Z.jsonl")
    if decoy != path:
        decoy.write_bytes(b"decoy\n" * 3)
    size = len(b'{"id": 1, "text": "x"}\n')
    assert expand_patterns(str(path)) == [str(path)]
    assert corpus_paths(str(path)) == [str(path)]
    assert file_size(str(path)) == size
    assert input_files([str(path)]) == [{"path": str(path), "bytes": size}]
    assert input_lineage([str(path)]) == [{"path": str(path), "bytes": size, "digest": None}]


def test_file_size_of_what_is_not_a_file(tmp_path):
    assert file_size(str(tmp_path / "gone[1].jsonl")) is None
    assert file_size(str(tmp_path)) is None   # a folder
    assert input_lineage([str(tmp_path / "a*.jsonl")]) == [
        {"path": str(tmp_path / "a*.jsonl"), "bytes": None, "digest": None}]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_a_job_reads_records_and_shows_the_total_of_a_glob_named_input(tmp_path, name):
    """End to end (a real ``prepare_corpus`` process, plain display): the named file's
    50 documents are read (not the decoy's 3), every progress line shows its size as
    the total, and the manifest and the report's lineage record it with size and digest."""
    data = _sample(50)
    path = tmp_path / name
    path.write_bytes(data)
    if NAMES[name]:
        (tmp_path / NAMES[name]).write_bytes(_sample(3))
    env = dict(os.environ, PYTHONPATH=ROOT, DATAPREP_PROGRESS_INTERVAL="0.2")
    env.pop("DATAPREP_RUN_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.prepare_corpus", "--input", name,
         "--output_roots", "out", "--run_config", "direct"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    total = progress._human(len(data))
    assert lines and all(f"/{total} (" in line for line in lines[:-1]), lines
    assert re.fullmatch(rf"prepare_corpus done in [\d.]+s: 50 documents, "
                        rf"{re.escape(total)} read", lines[-1]), lines
    dataset = tmp_path / "out" / "corpus"
    manifest = orjson.loads((dataset / "manifest.json").read_bytes())
    assert manifest["inputs"] == [{"path": str(path), "bytes": len(data)}]
    report = orjson.loads((dataset / "_audit" / "run_report.json").read_bytes())
    assert report["counters"]["read/records"] == 50
    assert report["inputs"] == [{"path": str(path), "bytes": len(data),
                                 "digest": xxhash.xxh3_64(data).hexdigest()}]


@pytest.mark.parametrize("root", ["o[1]", "o]", "o*x", "o?", "a/b[c]/d"])
def test_an_output_root_with_glob_characters_is_refused_in_one_line(tmp_path, root):
    """Output roots are written through Beam's file sinks, which match their own
    temporary files as patterns: such a root is refused before anything is written
    (it used to fail after the whole run, leaving spill folders)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.prepare_corpus", "--output_roots", f"ok,{root}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2
    odd = " ".join(sorted({c for c in root if c in "[]*?"}))
    assert proc.stderr.splitlines()[0] == (
        f"python -m pipelines.prepare_corpus: error: root {tmp_path / root} holds the glob "
        f"character(s) {odd}: Beam's file writes read such a path as a pattern; choose a "
        "root without them")
    assert os.listdir(tmp_path) == []
