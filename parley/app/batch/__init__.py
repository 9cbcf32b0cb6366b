"""Batch recomputations over the raw event log, independent of the streaming code (``streams``)."""
