"""Pass 1 over Parquet inputs: a unit of row groups -> batches of ``DocRef``
(``transforms.processing.refs``'s scan, fed rows instead of lines).

Kept apart from ``transforms.processing.parquet`` (which ``refs`` imports
for pass 2) so the two modules do not import each other.
"""
from transforms.processing.parquet import ParquetSource, unit_digest, unit_documents
from transforms.processing.refs import _ScanFile


class ScanParquetUnit(_ScanFile):
    """``(file index, path, first row group, end row group)`` -> batches of
    ``DocRef`` (``line`` = row number in the file, from 1), dead letters with
    ``row_group`` and ``row``, and from a file's first unit its ``Digest``."""

    def process(self, unit):
        index, path, first, stop = unit
        tally = dict.fromkeys(self.counters, 0)
        with ParquetSource(path) as source:
            documents = unit_documents(source, first, stop, self.id_field, self.text_field,
                                       self.keep_empty, self.max_line_bytes, self._count_bad,
                                       tally)
            yield from self.scan(index, path, documents, part=first)
            yield from unit_digest(source, index, first)
        for name, counter in self.counters.items():
            counter.inc(tally[name])
