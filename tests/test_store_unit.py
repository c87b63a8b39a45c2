import orjson
import pytest
import zstandard

from transforms.core.hashing import checksum
from transforms.storage.store import (
    StoreError, build_manifest, check_replica, compress_zstd, decompress_zstd, for_root,
    load_manifest, manifest_bytes, pack_text_shard, shard_name, write_atomically)
from transforms.storage.commit import manifest_problem, seal
from transforms.storage.sharding import plan_partition


def test_pack_text_shard_sorted_by_id():
    docs = [("b", b'{"id":"b"}'), ("a", b'{"id":"a"}'), ("c", b'{"id":"c"}')]
    assert pack_text_shard(docs) == b'{"id":"a"}\n{"id":"b"}\n{"id":"c"}\n'
    assert pack_text_shard([]) == b""


def test_zstd_round_trip_deterministic_and_bounded():
    raw = b"hello world\n" * 10_000
    stored = compress_zstd(raw, 3)
    assert stored == compress_zstd(raw, 3)
    assert decompress_zstd(stored, len(raw)) == raw
    assert decompress_zstd(compress_zstd(b"", 3), 0) == b""
    with pytest.raises(StoreError, match="declares"):
        decompress_zstd(stored, len(raw) - 1)  # a manifest/frame disagreement is caught
    with pytest.raises((StoreError, zstandard.ZstdError)):
        decompress_zstd(stored[: len(stored) // 2], len(raw))


def test_shard_count_and_name():
    def shard_count(total, target):
        return plan_partition([(0, total, ("k",))], None, target)["num_shards"]
    assert shard_count(0, 100) == 1
    assert shard_count(100, 100) == 1
    assert shard_count(101, 100) == 2
    assert shard_name(3, 12) == "shard-00003-of-00012.jsonl.zst"
    assert shard_name(3, 12, ".bdparr", "0123456789abcdef0123") == \
        "shard-00003-of-00012-0123456789abcdef.bdparr"


def test_manifest_round_trip_and_canonical_bytes(tmp_path):
    shards = [
        {"name": "shard-00001-of-00002.jsonl.zst", "index": 1, "records": 2, "raw_bytes": 20,
         "stored_bytes": 15, "checksum": "ab", "replicas": [0]},
        {"name": "shard-00000-of-00002.jsonl.zst", "index": 0, "records": 1, "raw_bytes": 10,
         "stored_bytes": 9, "checksum": "cd", "replicas": [1]},
    ]
    body = build_manifest("ds", [str(tmp_path), "/r2"], 1, {"name": "zstd", "level": 3},
                          shards, {"kind": "text"})
    assert [s["name"] for s in body["shards"]] == sorted(s["name"] for s in shards)
    assert (body["records"], body["raw_bytes"], body["stored_bytes"]) == (3, 30, 24)
    manifest = seal(body, 1, None)
    assert manifest_problem(body) == "digest does not match its content (changed or damaged)"
    assert manifest_problem(manifest) is None
    write_atomically(str(tmp_path / "ds" / "manifest.json"),
                     manifest_bytes(for_root(manifest, 0)))
    assert load_manifest(str(tmp_path / "ds")) == for_root(manifest, 0)
    reordered = dict(reversed(list(manifest.items())))
    assert manifest_bytes(reordered) == manifest_bytes(manifest)


def test_load_manifest_errors(tmp_path):
    with pytest.raises(StoreError, match=r"^no store at .* \(no manifest\.json in it\)$"):
        load_manifest(str(tmp_path))
    with pytest.raises(StoreError, match=r"^no store at .* \(not found\)$"):
        load_manifest(str(tmp_path / "nothere"))
    (tmp_path / "manifest.json").write_bytes(b"{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        load_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_bytes(orjson.dumps({"format": "other"}))
    with pytest.raises(StoreError, match="not a"):
        load_manifest(str(tmp_path))


def test_write_atomically_leaves_no_temp_files(tmp_path):
    target = tmp_path / "deep" / "dir" / "file.bin"
    write_atomically(str(target), b"one")
    write_atomically(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_check_replica_statuses(tmp_path):
    data = b"stored bytes"
    shard = {"stored_bytes": len(data), "checksum": checksum(data)}
    path = tmp_path / "s"
    assert check_replica(str(path), shard) == ("missing", None)
    path.write_bytes(data)
    assert check_replica(str(path), shard) == ("ok", data)
    path.write_bytes(data + b"!")
    assert check_replica(str(path), shard)[0] == "size_mismatch"
    path.write_bytes(b"X" + data[1:])
    assert check_replica(str(path), shard)[0] == "corrupt"
