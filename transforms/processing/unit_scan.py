"""Pass 1 over units of work smaller than a file: row groups of a Parquet file
(``transforms.processing.parquet``) and ranges (bytes, or zstd frames) of a large
JSON Lines file (``transforms.processing.splits``), scanned by
``transforms.processing.refs``'s scan.

Kept apart from ``parquet`` and ``splits`` (which ``refs`` imports for pass 2)
so the modules do not import each other.
"""
import apache_beam as beam

from transforms.core.records import ScannedRange

from transforms.processing.parquet import ParquetSource, unit_digest, unit_documents
from transforms.processing.refs import _ScanFile
from transforms.processing.splits import count_range, open_range, range_numbers

UNIT_DIGESTS_TAG = "unit_digests"


class ScanParquetUnit(_ScanFile):
    """``(file index, path, first row group, end row group)`` -> batches of
    ``DocRef`` (``line`` = row number in the file, from 1), dead letters with
    ``row_group`` and ``row``, from a file's first unit its ``Digest``, and the
    unit as a ``ScannedRange`` (row groups, rows, footer digest) to
    ``unit_digests``."""

    def process(self, unit):
        index, path, first, stop = unit
        tally = dict.fromkeys(self.counters, 0)
        with ParquetSource(path) as source:
            documents = unit_documents(source, first, stop, self.id_field, self.text_field,
                                       self.keep_empty, self.max_line_bytes, self._count_bad,
                                       tally)
            yield from self.scan(index, path, documents, part=first)
            yield from unit_digest(source, index, first)
            rows = source.first_rows[stop] - source.first_rows[first]
            yield beam.pvalue.TaggedOutput(UNIT_DIGESTS_TAG, ScannedRange(
                index, first, stop, source.first_rows[first], rows, source.digest))
        for name, counter in self.counters.items():
            counter.inc(tally[name])


def count_unit_lines(unit):
    """``(file index, path, start, end, size)`` -> ``((file index, start), count)``:
    lines starting in a byte range, or a zstd range's ``FrameLines``
    (``transforms.processing.splits.count_range``)."""
    index, path, start, end, size = unit
    return (index, start), count_range(path, start, end, size)


class ScanJsonlRange(_ScanFile):
    """``(file index, path, start, end, size)`` -> batches of ``DocRef`` for the lines
    starting in a range (bytes ``[start, end)``, or the zstd frames there),
    numbered exactly (``counts``: a side input ``{(file index, start): count}``
    of ``count_unit_lines``, see ``splits.range_numbers``); the range as read,
    a ``ScannedRange`` with its digest, to ``unit_digests``."""

    def process(self, unit, counts):
        index, path, start, end, _ = unit
        first_line, lines, inside_line = range_numbers(counts, index, start)
        reader = open_range(path, start, end, inside_line)
        yield from self.scan(index, path, self.documents(path, None, reader, first_line),
                             part=len([1 for (i, s) in counts if i == index and s < start]))
        yield beam.pvalue.TaggedOutput(UNIT_DIGESTS_TAG, ScannedRange(
            index, start, end, first_line, lines, reader.digest.hexdigest(), inside_line))
