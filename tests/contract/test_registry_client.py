"""The Schema Registry client and the codec's registry ids, against a real Confluent-compatible
registry (Apicurio Registry, ``tests/schema_registry.py``): registration under
``<topic>-<record>`` subjects, look-ups, both caches, the per-process codec, and the registry's
own compatibility checks over every released version."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from schemas import topics
from schemas.catalog import catalog, make_version
from schemas.codec import Codec, DecodeError, LocalIds, codec_for, new_codec
from schemas.registry import RegistryClient, RegistryError, RegistryIds, schema_text
from tests.contract.test_codec import make_message
from tests.schema_registry import registry_config, schema_registry_url  # noqa: F401 (fixture)

pytestmark = pytest.mark.contract

CAT = catalog()
PUBLIC_TYPES = {t for topic in topics.ALL if topic.public for t in topic.value_types}


def subjects(prefix: str) -> dict[str, str]:
    """Every subject the catalogue implies -> the short name of its event type."""
    return {f"{prefix}{t.name}-{CAT.by_short[n].fullname}": n
            for t in topics.ALL + topics.INTERNAL for n in t.value_types if n in CAT.by_short}


def header_id(data: bytes) -> int:
    return int.from_bytes(data[1:5], "big")


# -- without a registry ----------------------------------------------------------------------

def test_without_a_url_the_process_codec_has_local_ids() -> None:
    codec = codec_for(registry_config("", "p."))
    assert isinstance(codec.ids, LocalIds) and codec is codec_for(None) and codec.registry_url is None
    assert header_id(codec.encode(make_message())) == CAT.latest("MessageReceived").local_id


def test_one_codec_per_process_and_settings() -> None:
    a = registry_config("http://127.0.0.1:1/apis/ccompat/v7", "a.")
    assert codec_for(a) is codec_for(registry_config(a.schema_registry_url + "/", "a."))
    assert codec_for(a) is not codec_for(registry_config(a.schema_registry_url, "b."))
    assert isinstance(codec_for(a).ids, RegistryIds) and codec_for(a).ids.client.calls == 0  # nothing asked yet


@pytest.mark.parametrize("sv", CAT.all_versions(), ids=lambda sv: f"{sv.name}-v{sv.version}")
def test_registered_text_is_the_schema(sv) -> None:
    text = schema_text(sv)
    assert json.loads(text) == {k: v for k, v in sv.schema.items() if k != "version"}
    assert '"{}"' not in text  # Apicurio 3.0 cannot type a schema holding that string


# -- against the registry --------------------------------------------------------------------

def test_prepare_registers_every_subject_of_the_catalogue(schema_registry_url) -> None:  # noqa: F811
    config = registry_config(schema_registry_url)
    codec = new_codec(config)
    codec.prepare()
    client = RegistryClient(schema_registry_url)
    want = subjects(config.topic_prefix)
    with ThreadPoolExecutor(8) as pool:
        latest = dict(zip(want, pool.map(client.version_id, want), strict=True))
    for subject, name in want.items():
        topic = subject[len(config.topic_prefix):subject.index(f"-{CAT.by_short[name].fullname}")]
        assert codec.ids.id_for(CAT.latest(name), topic) == latest[subject], subject


def test_records_carry_registry_ids_that_a_new_process_reads(schema_registry_url) -> None:  # noqa: F811
    config = registry_config(schema_registry_url)
    writer = new_codec(config)
    writer.prepare([topics.MESSAGES])
    data = writer.encode(make_message(), topics.named(config.topic_prefix, topics.MESSAGES))
    subject = f"{config.topic_prefix}parley.messages-{CAT.latest('MessageReceived').fullname}"
    assert header_id(data) == RegistryClient(schema_registry_url).version_id(subject)
    assert header_id(data) != CAT.latest("MessageReceived").local_id
    reader = new_codec(config)
    reader.prepare([])  # a reader registers nothing, and learns every id the catalogue knows
    calls = reader.ids.client.calls
    assert reader.decode(data) == make_message()
    assert reader.ids.client.calls == calls and reader.ids.lazy == 0
    assert header_id(data) in reader.ids_of(["MessageReceived"])  # the egress's filter of its input


def test_after_prepare_no_record_asks_the_registry(schema_registry_url) -> None:  # noqa: F811
    codec = new_codec(registry_config(schema_registry_url))
    codec.prepare()
    calls = codec.ids.client.calls
    codec.prepare()  # a second component of the same process
    for n in range(200):
        event = make_message(text=f"message {n}")
        for topic in (topics.MESSAGES, topics.CONVERSATION_MESSAGES, topics.CONVERSATIONS):
            assert codec.decode(codec.encode(event, topic.name)) == event
    assert codec.ids.client.calls == calls and codec.ids.lazy == 0


def test_a_type_without_topic_takes_its_only_topic(schema_registry_url) -> None:  # noqa: F811
    config = registry_config(schema_registry_url)
    codec = new_codec(config)
    codec.prepare([topics.DEAD_LETTER])
    calls = codec.ids.client.calls
    sv = CAT.latest("DeadLetter")
    assert codec.ids.subject(sv, None) == f"{config.topic_prefix}parley.deadletter-{sv.fullname}"
    assert codec.ids.id_for(sv, None) == codec.ids.id_for(sv, topics.DEAD_LETTER.name)
    assert codec.ids.client.calls == calls


def test_an_unknown_id_is_asked_once_inline_then_cached(schema_registry_url) -> None:  # noqa: F811
    config = registry_config(schema_registry_url)
    writer = new_codec(config)
    data = writer.encode(make_message(), topics.MESSAGES.name)  # not prepared: registered inline
    assert writer.ids.lazy == 1
    reader = new_codec(config)  # not prepared: the synchronous worker's case
    assert reader.decode(data) == make_message() == reader.decode(data)
    assert reader.ids.client.calls == 1 and reader.ids.lazy == 1


def test_an_id_the_registry_does_not_have_is_a_decode_error_asked_once(schema_registry_url) -> None:  # noqa: F811
    reader = new_codec(registry_config(schema_registry_url))
    data = b"\x00" + (2**31 - 7).to_bytes(4, "big") + b"\x02"
    for _ in range(3):
        with pytest.raises(DecodeError, match="schema id"):
            reader.decode(data)
    assert reader.ids.client.calls == 1


async def test_aresolve_learns_unknown_ids_off_the_event_loop(schema_registry_url) -> None:  # noqa: F811
    config = registry_config(schema_registry_url)
    writer = new_codec(config)
    await writer.aprepare([topics.MESSAGES])
    values = [writer.encode(make_message(text=str(n)), topics.MESSAGES.name) for n in range(5)]
    reader = new_codec(config)
    asked_from: list[int] = []
    fetch = reader.ids.client.schema
    reader.ids.client.schema = lambda i: asked_from.append(threading.get_ident()) or fetch(i)  # type: ignore[method-assign]
    await reader.aresolve([*values, None, b"junk"])
    assert asked_from and threading.get_ident() not in asked_from  # asked in a thread
    assert [reader.decode(v)["text"] for v in values] == [str(n) for n in range(5)]
    assert reader.ids.lazy == 0 and len(asked_from) == 1  # one id for five records


def test_an_unreachable_registry_fails_at_start_not_per_record() -> None:
    codec = new_codec(registry_config("http://127.0.0.1:9/apis/ccompat/v7"))
    with pytest.raises(RegistryError):
        codec.prepare([topics.MESSAGES])


def test_the_registry_holds_every_released_version_to_its_compatibility_level(schema_registry_url) -> None:  # noqa: F811
    """Each subject at BACKWARD_TRANSITIVE (FULL_TRANSITIVE on public topics) accepts every
    released version in order, then today's; a new field without default is refused."""
    prefix = registry_config(schema_registry_url).topic_prefix
    client = RegistryClient(schema_registry_url)

    def release_all(item: tuple[str, str]) -> None:
        subject, name = item
        public = any(name in t.value_types for t in topics.ALL
                     if t.public and subject.startswith(prefix + t.name + "-"))
        client.set_compatibility(subject, "FULL_TRANSITIVE" if public else "BACKWARD_TRANSITIVE")
        current = CAT.latest(name)
        for sv in [*CAT.history(current.fullname), current]:
            client.register(subject, schema_text(sv))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(release_all, subjects(prefix).items()))

    current = CAT.latest("MessageReceived")
    subject = f"{prefix}{topics.MESSAGES.name}-{current.fullname}"
    assert client.compatible(subject, schema_text(current))
    schema = copy.deepcopy(current.schema)
    schema["fields"].append({"name": "required_without_default", "type": "string"})
    breaking = schema_text(make_version(schema))
    assert not client.compatible(subject, breaking)
    with pytest.raises(RegistryError) as refused:
        client.register(subject, breaking)
    assert refused.value.status == 409


def test_codec_with_a_registry_is_still_a_codec(schema_registry_url) -> None:  # noqa: F811
    codec = codec_for(registry_config(schema_registry_url, "same."))
    assert isinstance(codec, Codec) and codec.registry_url == schema_registry_url.rstrip("/")
    asyncio.run(codec.aprepare([]))
    assert codec is codec_for(registry_config(schema_registry_url, "same."))
