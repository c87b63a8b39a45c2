"""Runnable beam-dataprep jobs: ``python -m pipelines`` (or ``dataprep``) lists them."""

from transforms import __version__  # noqa: F401 - written once, in transforms/__init__.py


def _quiet_beam_import_warnings() -> None:
    """Drop the one warning Beam logs on import for an extra we do not use.

    apache_beam.io.gcp logs "apitools not found, and bigquery client libraries
    are not available..." through the root logger whenever the ``gcp`` extra is
    absent; it opened every command.  Only that message is filtered.
    """
    import logging

    class _DropApitools(logging.Filter):
        def filter(self, record):
            return not str(record.msg).startswith("apitools not found")

    logging.getLogger().addFilter(_DropApitools())


_quiet_beam_import_warnings()
