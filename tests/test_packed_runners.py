"""Every record type the job packs (``transforms.core.records.Packed``) survives
``pack`` -> a shuffle -> ``unpack`` on every runner, equal field by field.

``pack`` stores a list of NamedTuples of one nameable class by columns and
keeps other lists as rows.  What class a worker holds depends on the runner: a
type registered with ``RowCoder`` comes back from a portable runner's shuffle
as Beam's schema-generated ``BeamSchema_<uuid>`` class (the Flink and Spark
clusters), which pickle cannot name, so those lists must keep the row form;
that case broke the web-recipe job on both clusters once (records.py,
``_is_record_class``).  This test sends randomly drawn records of every packed
type (edge values of each field's type: empty, non-ASCII, signed 64-bit
extremes, nested records) through that path on the configured runner, so CI
checks it on each (``cross_runner``).
"""
import random
import typing

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from transforms.core.records import DocRef, Digest, Packed, Pick, Run, ScannedRange, pack, unpack
from transforms.reduction.dedup import IdKey
from transforms.reduction.near_dedup import Anchored, Doc, Scored, Signed
from transforms.storage.sharding import ShardRecord

STRINGS = ["", "a", "doc-0001", "日本語のテキスト", "emoji \U0001F600", "tab\tnew\nline", "x" * 300]
BYTES = [b"", b"\x00", b"\xff\xfe\x00\x01", b"null", b'{"a": 1}', bytes(range(16))]
INTS = [0, 1, -1, 255, 2**31, -2**31, 2**63 - 1, -2**63]
FLOATS = [0.0, -0.0, 0.5, 1.0, 0.1234, 1e-300, 3.5e38]


def draw(kind, rng: random.Random):
    """One value of an annotated field type: edge values of str/bytes/int/float/bool,
    tuples and lists of them, nested records."""
    origin = typing.get_origin(kind)
    if kind is str:
        return rng.choice(STRINGS)
    if kind is bytes:
        return rng.choice(BYTES)
    if kind is bool:
        return rng.random() < 0.5
    if kind is int:
        return rng.choice(INTS)
    if kind is float:
        return rng.choice(FLOATS)
    if origin is tuple:   # Tuple[str, int, int]
        return tuple(draw(k, rng) for k in typing.get_args(kind))
    if kind is tuple:     # an order key: ints
        return tuple(rng.choice(INTS[:6]) for _ in range(rng.randint(1, 3)))
    if kind is list:      # Run.orders / Run.ids
        return [rng.choice(STRINGS) for _ in range(rng.randint(0, 3))]
    if kind is typing.Any:   # ShardRecord.payload: a JSON line or a DocRef
        return rng.choice([lambda: rng.choice(BYTES), lambda: record(DocRef, rng)])()
    if isinstance(kind, type) and issubclass(kind, tuple) and hasattr(kind, "_fields"):
        return record(kind, rng)
    raise AssertionError(f"no values for field type {kind!r}")


def record(cls, rng: random.Random):
    hints = typing.get_type_hints(cls)
    return cls(*(draw(hints[name], rng) for name in cls._fields))


# Every type a Packed carries in the job (refs.py, dedup.py, near_dedup.py, sharding.py,
# prepare.py), and every RowCoder-registered record beside them.
PACKED_TYPES = [DocRef, IdKey, Pick, ShardRecord, Run, Digest, ScannedRange, Signed, Doc,
                Scored, Anchored]


def plain(value):
    """A record as (field names, plain values), whatever class the runner decoded it into."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return (tuple(value._fields), tuple(plain(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(plain(v) for v in value)
    return value


def test_draw_covers_every_field_of_every_packed_type():
    rng = random.Random(0)
    for cls in PACKED_TYPES:
        drawn = [record(cls, rng) for _ in range(50)]
        for i, field in enumerate(cls._fields):   # each field takes several values
            assert len({repr(r[i]) for r in drawn}) > 1, (cls.__name__, field)
        assert unpack(pack(drawn)) == drawn


class _PackAll(beam.DoFn):
    """(key, records) -> one Packed of them all, in a fixed order."""

    def process(self, keyed):
        _, records = keyed
        yield pack(sorted(records, key=lambda r: repr(plain(r))))


@pytest.mark.cross_runner
def test_every_packed_type_survives_a_shuffle_on_the_runner(make_pipeline):
    rng = random.Random(20261201)
    drawn = {cls: [record(cls, rng) for _ in range(40)] for cls in PACKED_TYPES}
    with make_pipeline() as p:
        for cls, records in drawn.items():
            name = cls.__name__
            got = (p
                   | f"Create{name}" >> beam.Create(records).with_output_types(cls)
                   | f"Shuffle{name}" >> beam.Reshuffle()
                   | f"One{name}" >> beam.Map(lambda r: (0, r)).with_output_types(
                       typing.Tuple[int, cls])
                   | f"Group{name}" >> beam.GroupByKey()
                   | f"Pack{name}" >> beam.ParDo(_PackAll()).with_output_types(Packed)
                   | f"ShufflePacked{name}" >> beam.Reshuffle()
                   | f"Unpack{name}" >> beam.FlatMap(unpack)
                   | f"Plain{name}" >> beam.Map(plain))
            assert_that(got, equal_to([plain(r) for r in records]), label=f"Check{name}")
