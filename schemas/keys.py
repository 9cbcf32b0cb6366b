"""Keys: the grammar of Parley's Kafka keys and store keys, and the one tenant parser.

A key is its parts joined by ``|``, the tenant first when it has one (``acme|whatsapp|+336...``).
Only the last part may itself hold a ``|`` (a channel identity's id, a contact id): the ids in
the other parts are checked where they enter (tenant, adapter and account patterns, agent ids),
so a key splits back into the parts it was built from. Building never refuses a part, though:
the bytes decide partitions, and a key is spelled exactly as it always was.

Each topic builds and parses its own keys (``schemas.topics.Topic.key`` / ``parse_key``); a
stage's store keys that are not a topic's (``tenant|thread``, ``tenant|event id``...) use
``scoped``.
"""

from __future__ import annotations

SEP = "|"


def join(parts: tuple[object, ...], n: int, what: str) -> str:
    """``n`` parts as one key (``what`` names the key in the error when the count is wrong)."""
    if len(parts) != n:
        raise TypeError(f"{what}: {n} key parts expected, got {len(parts)}")
    return SEP.join(map(str, parts))


def split(key: str | bytes, n: int, what: str) -> tuple[str, ...]:
    """The ``n`` parts of a key (bytes are UTF-8); the last part keeps any ``|`` it holds."""
    text = key.decode() if isinstance(key, bytes) else key
    parts = tuple(text.split(SEP, n - 1))
    if len(parts) != n:
        raise ValueError(f"{what}: {text!r} does not have {n} key parts")
    return parts


def tenant_of(key: str | bytes) -> str:
    """The tenant of a key scoped by tenant (its first part): the one tenant parser."""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return text.partition(SEP)[0]


def scoped(tenant: str, *parts: object) -> str:
    """A stage's store key scoped by tenant, shaped like the topic keys: ``tenant|part|...``."""
    return SEP.join((tenant, *map(str, parts)))
