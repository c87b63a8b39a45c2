"""codec_report on arrays, text and stores: every candidate measured, the policy's choice named."""
import numpy as np
import orjson
import pytest

from pipelines import codec_report, compress_arrays
from transforms.core.codecs import applicable_array_codecs


def embeddings(n=600, d=48, seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d))
    x = centres[rng.integers(0, 10, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_report_on_npy_arrays_chooses_within_the_error(tmp_path):
    np.save(tmp_path / "e.npy", embeddings())
    out = tmp_path / "report.json"
    result = codec_report.run(["--input", str(tmp_path / "e.npy"), "--max_error", "abs<=5e-4",
                               "--repeats", "1", "--report", str(out)])
    assert len(result["candidates"]) == len(applicable_array_codecs(np.float32))
    by_codec = {r["codec"]: r for r in result["candidates"]}
    assert result["chosen"] == "fp16:inner=zstd"
    chosen = by_codec[result["chosen"]]
    assert chosen["max_abs"] <= 5e-4
    better = [r for r in result["candidates"] if r["ratio"] > chosen["ratio"]]
    assert better and all(r["max_abs"] > 5e-4 for r in better)
    assert orjson.loads(out.read_bytes()) == result


def test_report_on_text_is_lossless_only(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(b'{"id": "%d", "text": "row %d of a corpus"}\n' % (i, i % 50)
                              for i in range(3000)))
    result = codec_report.run(["--input", str(path), "--repeats", "1",
                               "--candidates", "lz4", "--candidates", "zstd:level=3"])
    assert result["kind"] == "text"
    assert {r["codec"] for r in result["candidates"]} == {"lz4:level=0", "zstd:level=3"}
    assert result["chosen"] == max(result["candidates"], key=lambda r: r["ratio"])["codec"]


def test_report_on_an_array_store(tmp_path, run_config):
    x = embeddings(300)
    np.save(tmp_path / "e.npy", x)
    compress_arrays.run(["--input", str(tmp_path / "e.npy"), "--output_roots",
                         str(tmp_path / "r"), "--dataset", "emb", "--block_rows", "100",
                         "--run_config", run_config])
    result = codec_report.run(["--input", str(tmp_path / "r" / "emb"), "--repeats", "1",
                               "--codec", "none", "--candidates", "fp16"])
    assert result["kind"] == "arrays" and result["sample_bytes"] == x.nbytes
    assert 0 < result["candidates"][0]["max_abs"] < 1e-3


def test_bad_policy_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit):
        codec_report.run(["--input", str(tmp_path), "--max_error", "cosine=1"])


def test_report_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """--report goes through write_atomically: a write that fails half-way leaves the
    earlier report byte for byte, and no temporary file."""
    import os

    from transforms.storage import commit
    np.save(tmp_path / "e.npy", np.arange(64, dtype=np.float32).reshape(16, 4))
    out = tmp_path / "report.json"
    out.write_bytes(b"earlier report")
    real_create = commit.FileSystems.create

    def failing_create(path, *args, **kwargs):
        handle = real_create(path, *args, **kwargs)
        real_write = handle.write

        def write(data):
            real_write(data)
            raise OSError(28, "No space left on device")
        handle.write = write
        return handle
    monkeypatch.setattr(commit.FileSystems, "create", failing_create)
    with pytest.raises(ValueError, match="cannot write .*report.json: no space left on device"):
        codec_report.run(["--input", str(tmp_path / "e.npy"), "--repeats", "1",
                          "--report", str(out)])
    assert out.read_bytes() == b"earlier report"
    assert sorted(os.listdir(tmp_path)) == ["e.npy", "report.json"]
