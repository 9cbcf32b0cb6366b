"""The event contract: Avro schemas (``avro/``, one named type per file, namespace = folder),
their released versions (``history/``), the codec, the topic catalogue and its keys.

This package imports nothing else of Parley's.
"""
