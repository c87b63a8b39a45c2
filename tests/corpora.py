"""Small corpora with known duplicates, bad lines and missing ids, for pipeline tests."""
import os

import zstandard

FILE1 = [
    b'{"id": "d03", "text": "The quick brown fox.", "lang": "en"}',
    b'{"id": "d01", "text": "the  QUICK brown\\nfox."}',
    b'{"id": "d02", "text": "Another document entirely."}',
    b'{"id": "d10", "text": "broken',
    "{\"id\": \"d05\", \"text\": \"Caf\u00e9 au lait\"}".encode(),
    b'{"id": "d04", "text": "CAFE\\u0301 AU LAIT"}',
    b'{"text": "No id here, unique.", "n": 1}',
    b'[1, 2]',
    b'',
]
FILE2 = [
    b'{"id": "d06", "text": "Another document entirely."}',
    b'{"id": "d07", "text": 5}',
    b'{"id": "d08", "text": "Zeta"}',
    b'{"id": "d09"}',
]


def write_small_corpus(directory) -> tuple[str, str]:
    """Two files (plain and zstd); returns their paths."""
    os.makedirs(directory, exist_ok=True)
    plain = os.path.join(directory, "part1.jsonl")
    packed = os.path.join(directory, "part2.jsonl.zst")
    with open(plain, "wb") as f:
        f.write(b"\n".join(FILE1) + b"\n")
    with open(packed, "wb") as f:
        f.write(zstandard.ZstdCompressor().compress(b"\n".join(FILE2) + b"\n"))
    return plain, packed


def expected_kept(plain_path: str) -> dict[str, bytes]:
    """id -> stored line of the documents exact dedup keeps."""
    no_id = f"{plain_path}:7"
    return {
        "d01": FILE1[1],
        "d02": FILE1[2],
        "d04": FILE1[5],
        # the id is spliced in before the closing brace; every other byte as read
        no_id: FILE1[6][:-1] + b',"id":"%s"}' % no_id.encode(),
        "d08": FILE2[2],
    }


def expected_dead(plain: str, packed: str) -> set[tuple[str, int, str]]:
    return {(plain, 4, "invalid_json"), (plain, 8, "not_an_object"),
            (packed, 2, "text_not_string"), (packed, 4, "missing_text")}


EXPECTED_REMOVED = {("d03", "d01"), ("d05", "d04"), ("d06", "d02")}
