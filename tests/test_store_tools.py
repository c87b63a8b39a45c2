"""A store's data opens with the standard tools and the README's globs, and returns
exactly the stored records: datasets, DuckDB, Polars and pandas on JSON Lines
(``shard-*.jsonl.zst``) and Parquet (``shard-*.parquet``) stores."""
import glob
import math
import os

import datasets
import duckdb
import numpy as np
import orjson
import pandas as pd
import polars as pl
import pytest

from pipelines import prepare_corpus
from transforms.storage.store import load_manifest

# Every column kind a corpus carries: strings, ints, floats (one missing), lists,
# structs.  Ints have no nulls (pandas would make them floats).
RECORDS = [{"id": f"doc{i:03d}", "text": f"text number {i} " * (1 + i % 4), "n": i,
            "tags": [f"t{i % 3}", "x"][: 1 + i % 2], "meta": {"src": f"s{i % 5}", "k": i % 7},
            **({"score": i / 4} if i % 6 else {})} for i in range(60)]
COLUMNS = ["id", "text", "meta", "n", "score", "tags"]




def plain(value):
    """A tool's value as plain Python: numpy arrays and scalars, NaN as null."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def normalised(rows) -> list[dict]:
    """Rows as ``{column: value}`` in COLUMNS, sorted by id; a float column's integral
    values compared as floats (JSON readers type 0.5 and 1 alike)."""
    out = []
    for row in rows:
        row = {c: plain(row.get(c)) for c in COLUMNS}
        if row["score"] is not None:
            row["score"] = float(row["score"])
        row["meta"] = dict(sorted(row["meta"].items()))
        out.append(row)
    return sorted(out, key=lambda r: r["id"])


@pytest.fixture(scope="module")
def stores(tmp_path_factory, run_config):
    base = tmp_path_factory.mktemp("tools")
    source = base / "in.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in RECORDS))
    folders = {}
    for fmt in ("jsonl", "parquet"):
        prepare_corpus.run(["--input", str(source), "--output_roots", str(base / fmt),
                            "--dataset", "web", "--num_shards", "3", "--no_near_dedup",
                            "--format", fmt, "--run_config", run_config])
        folders[fmt] = str(base / fmt / "web")
    return folders


def exp() -> list[dict]:
    """RECORDS as every tool returns them: COLUMNS, a missing score as null."""
    return sorted(({c: (dict(sorted(r[c].items())) if c == "meta" else r.get(c))
                    for c in COLUMNS} for r in RECORDS), key=lambda r: r["id"])


GLOBS = {"jsonl": "shard-*.jsonl.zst", "parquet": "shard-*.parquet"}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_duckdb(stores, fmt):
    folder = stores[fmt]
    reader = "read_json_auto" if fmt == "jsonl" else "read_parquet"
    result = duckdb.sql(f"select * from {reader}('{folder}/{GLOBS[fmt]}')")
    rows = [dict(zip(result.columns, values)) for values in result.fetchall()]
    assert normalised(rows) == exp()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_polars(stores, fmt):
    pattern = f"{stores[fmt]}/{GLOBS[fmt]}"
    frame = (pl.scan_ndjson(pattern) if fmt == "jsonl" else pl.scan_parquet(pattern)).collect()
    assert normalised(frame.to_dicts()) == exp()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_pandas(stores, fmt):
    paths = sorted(glob.glob(f"{stores[fmt]}/{GLOBS[fmt]}"))
    frames = [pd.read_json(p, lines=True, compression="zstd") if fmt == "jsonl"
              else pd.read_parquet(p) for p in paths]
    assert normalised(pd.concat(frames).to_dict("records")) == exp()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_datasets(stores, fmt, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    builder = "json" if fmt == "jsonl" else "parquet"
    loaded = datasets.load_dataset(builder, data_files=f"{stores[fmt]}/{GLOBS[fmt]}",
                                   split="train", cache_dir=str(tmp_path / "cache"))
    assert normalised(loaded.to_list()) == exp()


def test_the_globs_match_data_only(stores):
    for fmt, folder in stores.items():
        manifest = load_manifest(folder)
        assert sorted(glob.glob(f"{folder}/{GLOBS[fmt]}")) == sorted(
            os.path.join(folder, s["name"]) for s in manifest["shards"])
        assert manifest["records"] == len(RECORDS)
