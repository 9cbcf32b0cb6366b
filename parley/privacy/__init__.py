"""Crypto-shredding of personal data: sealed fields, a key per data subject, erasure, retention.

``crypto`` (AES-GCM, HMAC tokens, key wrapping; the ``cryptography`` package, nothing home-made),
``keystore`` (the SQL table of wrapped keys), ``keyring`` (a process's cache in front of it),
``seal`` (which fields of which event are sealed, and opening them again), ``erasure`` and
``retention`` (what an erasure and a retention run do). docs/PRIVACY.md is the map.

Imports point one way: this package imports only ``schemas`` and ``parley.settings``; the
ingress, the stream stages, the projections and the CLI import it.
"""
