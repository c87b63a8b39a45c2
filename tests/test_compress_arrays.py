"""compress_arrays end to end on the configured runner; load_array and ReadStore on array stores."""
import glob
import os
import pickle

import numpy as np
import orjson
import pytest
from apache_beam.testing.util import assert_that

from pipelines import compress_arrays, verify_store
from transforms import load_array
from transforms.core.codecs import array_codec, combine_metrics, decode_array, read_header
from transforms.processing.npy import NpyError, plan_blocks
from transforms.storage.store import ReadStore, StoreError, load_manifest, replica_roots


def run_job(run_config, inputs, roots, *extra):
    argv = ["--input", inputs, "--output_roots", ",".join(map(str, roots)), "--dataset", "emb",
            "--run_config", run_config, *extra]
    return compress_arrays.run(argv)


def store_files(roots) -> dict[str, bytes]:
    return {path: open(path, "rb").read() for root in roots
            for path in sorted(glob.glob(os.path.join(str(root), "emb", "*")))
            if not path.endswith("_audit")}


def embeddings(n, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d))
    x = centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def two_files(tmp_path):
    """Two .npy files (the second sorts first), with NaN/inf in the data."""
    a, b = embeddings(130, seed=1), embeddings(75, seed=2)
    a[3, 4], a[10, 0], b[0, 1] = np.nan, np.inf, -np.inf
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "part-1.npy", a)
    np.save(folder / "part-0.npy", b)
    return str(folder / "part-*.npy"), np.concatenate([b, a])


def test_lossless_store_is_bit_exact_replicated_and_reproducible(tmp_path, two_files, run_config):
    pattern, expected = two_files
    roots = [tmp_path / "r1", tmp_path / "r2", tmp_path / "r3"]
    report = run_job(run_config, pattern, roots, "--replication", "2", "--block_rows", "50",
                     "--codec", "blosc2:filter=bytedelta,cname=lz4")
    store = str(roots[0] / "emb")
    loaded = load_array(store)
    assert loaded.dtype == expected.dtype and loaded.shape == expected.shape
    assert loaded.tobytes() == expected.tobytes()

    manifest = load_manifest(store)
    assert manifest["kind"] == "array"
    assert manifest["array"] == {"dtype": "<f4", "shape": [205, 24], "order": "C",
                                 "block_rows": 50, "blocks": 5}
    assert manifest["codec"] == {"name": "blosc2", "filter": "bytedelta", "cname": "lz4",
                                 "clevel": 5}
    assert [(s["row_start"], s["records"]) for s in manifest["shards"]] == [
        (0, 50), (50, 50), (100, 50), (150, 50), (200, 5)]
    assert manifest["error"]["max_abs"] == 0.0
    assert [s["path"].rsplit("/", 1)[1] for s in manifest["sources"]] == ["part-0.npy",
                                                                          "part-1.npy"]
    for shard in manifest["shards"]:
        assert len(shard["replicas"]) == 2
        copies = {open(os.path.join(r, "emb", shard["name"]), "rb").read()
                  for r in replica_roots(manifest, shard)}
        assert len(copies) == 1
        header, _ = read_header(copies.pop())
        assert header["shape"] == (shard["records"], 24)
    assert all(r["status"] == "ok" for r in verify_store.verify_store(store))
    assert report["counters"]["arrays/rows_stored"] == 205
    assert report["counters"]["store/replicas_written"] == 10

    before = store_files(roots)
    run_job(run_config, pattern, roots, "--replication", "2", "--block_rows", "50",
            "--codec", "blosc2:filter=bytedelta,cname=lz4")
    assert store_files(roots) == before, "a rerun writes byte-identical shards and manifest"


def test_block_container_is_readable_by_hand(tmp_path, two_files, run_config):
    """What a user without this package does: header JSON, then zstd of the raw rows."""
    import struct

    import zstandard
    pattern, expected = two_files
    run_job(run_config, pattern, [tmp_path / "r"], "--block_rows", "1000",
            "--codec", "zstd:level=5")
    data = open(glob.glob(str(tmp_path / "r" / "emb" / "shard-*.bdparr"))[0], "rb").read()
    (head_len,) = struct.unpack("<I", data[8:12])
    header = orjson.loads(data[12:12 + head_len])
    raw = zstandard.ZstdDecompressor().decompress(data[12 + head_len:])
    rows = np.frombuffer(raw, dtype=header["dtype"]).reshape(header["shape"])
    assert rows.tobytes() == expected.tobytes()


def test_blosc2_store_is_readable_with_numpy_and_blosc2_only(tmp_path, two_files, run_config):
    """The format section of the README/codecs docstring, followed by hand: manifest
    for the block order, container header, blosc2.decompress2 of each part."""
    import json
    import struct

    import blosc2
    pattern, expected = two_files
    run_job(run_config, pattern, [tmp_path / "r"], "--block_rows", "70",
            "--codec", "blosc2:filter=bytedelta,cname=zstd")
    folder = tmp_path / "r" / "emb"
    manifest = json.loads((folder / "manifest.json").read_bytes())
    blocks = []
    for shard in sorted(manifest["shards"], key=lambda s: s["row_start"]):
        data = (folder / shard["name"]).read_bytes()
        assert data[:6] == b"BDPARR" and struct.unpack("<H", data[6:8]) == (1,)
        (head_len,) = struct.unpack("<I", data[8:12])
        header = json.loads(data[12:12 + head_len])
        (part,) = header["parts"]
        assert part["stage"]["name"] == "blosc2"
        body = data[12 + head_len:12 + head_len + part["stored_bytes"]]
        blocks.append(np.frombuffer(blosc2.decompress2(body), dtype=part["dtype"])
                      .reshape(part["shape"]).astype(header["dtype"]).reshape(header["shape"]))
    assert len(blocks) > 1
    assert np.concatenate(blocks).tobytes() == expected.tobytes()


def test_lossy_store_with_map_records_measured_error(tmp_path, run_config):
    rng = np.random.default_rng(5)
    raw = (rng.normal(size=(300, 32)) * 7).astype(np.float32)   # not normalised yet
    np.save(tmp_path / "x.npy", raw)
    roots = [tmp_path / "a", tmp_path / "b"]
    run_job(run_config, str(tmp_path / "x.npy"), roots, "--block_rows", "64", "--codec", "int8",
            "--map", "transforms.core.array_maps:l2_normalise")
    store = str(roots[1] / "emb")
    normalised = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    loaded = load_array(store)
    expected = np.concatenate([decode_array(array_codec("int8").encode(normalised[i:i + 64]))
                               for i in range(0, 300, 64)])
    assert loaded.tobytes() == expected.tobytes()
    manifest = load_manifest(store)
    assert manifest["map"] == "transforms.core.array_maps:l2_normalise"
    blocks = [array_codec("int8").measure(normalised[i:i + 64]) for i in range(0, 300, 64)]
    assert [s["error"] for s in manifest["shards"]] == blocks
    assert manifest["error"] == combine_metrics(blocks)
    assert manifest["error"]["cosine_mean"] > 0.999


def test_codec_auto_records_table_and_choice(tmp_path, run_config):
    np.save(tmp_path / "e.npy", embeddings(400, d=64))
    roots = [tmp_path / "a"]
    report = run_job(run_config, str(tmp_path / "e.npy"), roots, "--codec", "auto",
                     "--max_error", "cosine>=0.999,top10>=0.8", "--block_rows", "100")
    manifest = load_manifest(str(roots[0] / "emb"))
    choice = manifest["codec_choice"]
    assert choice["chosen"] == "int8:inner=zstd"
    assert manifest["codec"] == {"name": "int8", "inner": "zstd"}
    assert report["codec_choice"]["chosen"] == choice["chosen"]
    assert all("encode_mbps" not in row for row in choice["candidates"]), \
        "timings stay out of the manifest (it must be reproducible)"
    assert all(row["encode_mbps"] > 0 for row in report["codec_choice"]["candidates"])
    ratios = {r["codec"]: r["ratio"] for r in choice["candidates"]}
    assert ratios["binary:inner=zstd"] > ratios["int8:inner=zstd"] > ratios["fp16:inner=zstd"]


@pytest.mark.cross_runner
def test_read_store_yields_blocks_in_any_runner(tmp_path, two_files, run_config, make_pipeline):
    pattern, expected = two_files
    run_job(run_config, pattern, [tmp_path / "r"], "--block_rows", "64", "--codec", "zstd")

    def check(pairs):
        pairs = sorted(pairs, key=lambda p: p[0])
        assert [p[0] for p in pairs] == [0, 64, 128, 192]
        got = np.concatenate([p[1] for p in pairs])
        assert got.tobytes() == expected.tobytes()

    with make_pipeline() as p:
        assert_that(p | ReadStore(str(tmp_path / "r" / "emb")), check)


def test_load_array_fails_over_and_reports_unrecoverable_shards(tmp_path, two_files, run_config):
    pattern, expected = two_files
    roots = [tmp_path / "a", tmp_path / "b"]
    run_job(run_config, pattern, roots, "--block_rows", "100")
    manifest = load_manifest(str(roots[0] / "emb"))
    victim = manifest["shards"][1]
    first = os.path.join(replica_roots(manifest, victim)[0], "emb", victim["name"])
    data = bytearray(open(first, "rb").read())
    data[-3] ^= 0xFF
    open(first, "wb").write(bytes(data))
    assert load_array(str(roots[0] / "emb")).tobytes() == expected.tobytes()
    os.remove(os.path.join(replica_roots(manifest, victim)[1], "emb", victim["name"]))
    with pytest.raises(StoreError, match=victim["name"]):
        load_array(str(roots[0] / "emb"))


@pytest.mark.parametrize("array", [
    np.arange(60, dtype=">i4").reshape(20, 3),                    # big-endian
    np.asfortranarray(np.arange(60, dtype=np.float64).reshape(12, 5)),
    np.zeros((0, 7), dtype=np.float32),                           # no rows at all
    np.arange(10, dtype=np.uint8),                                # 1-d
    (np.arange(48) % 3 == 0).reshape(4, 3, 4),                    # bool, 3-d
])
def test_odd_inputs_round_trip_exactly(tmp_path, run_config, array):
    np.save(tmp_path / "odd.npy", array)
    run_job(run_config, str(tmp_path / "odd.npy"), [tmp_path / "r"], "--block_rows", "5")
    loaded = load_array(str(tmp_path / "r" / "emb"))
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    assert loaded.tobytes() == np.ascontiguousarray(array).tobytes()


def test_bad_inputs_are_refused_clearly(tmp_path, run_config):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(NpyError, match="pickle"):
        run_job(run_config, str(tmp_path / "objects.npy"), [tmp_path / "r"])
    (tmp_path / "evil.npy").write_bytes(pickle.dumps({"not": "an array"}))
    with pytest.raises(NpyError, match="not a readable .npy"):
        run_job(run_config, str(tmp_path / "evil.npy"), [tmp_path / "r"])
    np.save(tmp_path / "m1.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "m2.npy", np.zeros((3, 4), np.float64))
    np.save(tmp_path / "m3.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(NpyError, match=r"m1\.npy.*m2\.npy.*m3\.npy"):
        run_job(run_config, str(tmp_path / "m*.npy"), [tmp_path / "r"])
    np.save(tmp_path / "nan.npy", np.full((3, 4), np.nan, np.float32))
    with pytest.raises(Exception, match="NaN or inf"):
        run_job(run_config, str(tmp_path / "nan.npy"), [tmp_path / "r2"], "--codec", "int8")
    assert not os.path.exists(tmp_path / "r2" / "emb" / "manifest.json")


def test_a_map_that_drops_rows_fails_the_run(tmp_path, run_config):
    np.save(tmp_path / "x.npy", np.ones((10, 3), np.float32))
    with pytest.raises(Exception, match="same rows"):
        run_job(run_config, str(tmp_path / "x.npy"), [tmp_path / "r"],
                "--map", "tests.test_compress_arrays:drop_first_row")
    assert not os.path.exists(tmp_path / "r" / "emb" / "manifest.json")


def drop_first_row(block):
    return block[1:]


def test_plan_blocks_spans_files_and_covers_every_row():
    sources = [{"rows": 3}, {"rows": 0}, {"rows": 6}]
    blocks = plan_blocks(sources, 4)
    assert [(b["row_start"], b["rows"], b["pieces"]) for b in blocks] == [
        (0, 4, [[0, 0, 3], [2, 0, 1]]), (4, 4, [[2, 1, 4]]), (8, 1, [[2, 5, 1]])]
    assert plan_blocks([{"rows": 0}], 10) == [{"index": 0, "row_start": 0, "rows": 0,
                                               "pieces": []}]
