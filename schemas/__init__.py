"""The event contract: Avro schemas (``avro/``, one named type per file, namespace = folder),
their released versions (``history/``), the codec and the topic catalogue.

This package imports nothing else of Parley's.
"""
