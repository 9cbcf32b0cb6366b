"""kill -9 of the egress at random moments, repeated, against the emulators' counts.

The emulators run in their own process (their counts survive the kills); ``parley egress`` runs
as a child process killed with SIGKILL at random moments while messages are in flight, then
restarted, several times, then left to finish. Every message must reach its provider (nothing
lost); where the provider takes an idempotency key (LINE, RBM) none may be delivered twice;
elsewhere the duplicates are bounded by the attempts that were in doubt at the restarts (the
calls in flight at the kills). The numbers are printed for the report.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest

from parley.settings import KafkaSettings
from tests.integration.test_egress_delivery import (
    ACCOUNTS,
    final,
    free_port,
    make_received,
    make_sent,
    outcomes,
    produce,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("line", "rbm", "telegram", "whatsapp", "viber", "sms")
KEYED = {"line", "rbm"}


def _toml(accounts: dict) -> str:
    lines = []
    for a in accounts["accounts"]:
        lines += ["[[accounts]]", f'tenant = "{a["tenant"]}"', f'adapter = "{a["adapter"]}"',
                  f'account_id = "{a["account_id"]}"']
        send = dict(a["options"].get("send") or {})
        if send:
            send["rate_per_s"] = 60  # a pace that keeps calls in flight when the kills come
            lines.append("[accounts.options.send]")
            lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in send.items()]
        lines.append("")
    return "\n".join(lines)


async def _get(url: str):
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return orjson.loads(await r.read())


async def _wait(url: str) -> None:
    for _ in range(100):
        try:
            await _get(url)
            return
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.1)
    raise RuntimeError(url)


async def _sending(log: Path, runs: int, timeout: float = 60) -> None:
    """Until the ``runs``-th egress process reads its input."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_bytes().count(b"egress.first_record") >= runs:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the egress never got its partitions")


async def test_kill_9_repeatedly_loses_nothing_and_duplicates_only_in_doubt_calls(applied_topics: KafkaSettings,
                                                                                  tmp_path: Path) -> None:
    k = applied_topics
    rng = random.Random(12)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "accounts.toml").write_text(_toml(ACCOUNTS))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers, "PARLEY_KAFKA__TOPIC_PREFIX": k.topic_prefix,
           "PARLEY_ACCOUNTS_FILE": str(tmp_path / "accounts.toml"), "PARLEY_EMULATOR_URL": url,
           "PARLEY_GROUP_ID": "egress-kill", "PARLEY_INSTANCE_ID": "egress-1", "PARLEY_PORT": str(free_port()),
           "PARLEY_LOG__FORMAT": "json",
           "PARLEY_CALL_TIMEOUT_S": "5", "PARLEY_BACKOFF_BASE_S": "0.1", "PARLEY_BACKOFF_MAX_S": "1"}
    emulator = subprocess.Popen([sys.executable, "-c",
                                 f"from parley.app.emulator.providers import run; run('127.0.0.1', {port}, None)"],
                                env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    try:
        await _wait(f"{url}/_emulator/counts")
        async with aiohttp.ClientSession() as s:  # every call takes 20-80 ms: many in flight at a kill
            for provider in ("line", "rbm", "telegram", "whatsapp", "viber", "twilio"):
                await (await s.post(f"{url}/_emulator/faults", json={"provider": provider, "kind": "slow",
                                                                      "delay_s": 0.05, "ratio": 0.7})).read()
        n_per = 200
        msgs = [make_sent(ch, i, customer=f"c{i % 40}") for i in range(n_per) for ch in CHANNELS]
        produce(k, [make_received("whatsapp", i, customer=f"c{i % 40}") for i in range(40)] + msgs)
        kills = 0
        log = open(tmp_path / "egress.log", "ab")
        for i in range(5):
            p = subprocess.Popen([sys.executable, "-m", "parley.app.cli", "egress"], env=env, stderr=log, cwd=ROOT)
            await _sending(tmp_path / "egress.log", i + 1)  # it has its partitions and reads them
            await asyncio.sleep(rng.uniform(0.0, 1.0))  # it sends a while: the kill lands anywhere
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            kills += 1
        p = subprocess.Popen([sys.executable, "-m", "parley.app.cli", "egress"], env=env, stderr=log, cwd=ROOT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(final(outcomes(k))) < len(msgs):
            await asyncio.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        delivered = Counter(m["text"] for m in await _get(f"{url}/_emulator/messages"))
        counts = await _get(f"{url}/_emulator/counts")
    finally:
        emulator.terminate()
        emulator.wait(10)
    evs = outcomes(k)
    done = final(evs)
    in_doubt = Counter(e["channel"] for e in evs
                       if e["envelope"]["event_type"] == "OutboundAttempted" and e["in_doubt"])
    lost, dups = Counter(), Counter()
    for m in msgs:
        text = m["text"]
        times = delivered[text]
        if times == 0:
            lost[m["channel"]] += 1
        dups[m["channel"]] += max(times - 1, 0)
        outcome = done.get(m["envelope"]["event_id"], {}).get("envelope", {}).get("event_type")
        assert outcome == "OutboundSent", m["channel"]
    replays = {p: sum(c.get("key_replays", 0) for c in accs.values()) for p, accs in counts.items()}
    print(f"\nkill -9 x{kills}: {len(msgs)} messages; lost {dict(lost)}; duplicates {dict(dups)}; "
          f"in-doubt resends {dict(in_doubt)}; replays refused by idempotency keys {replays}")
    assert sum(lost.values()) == 0
    assert all(dups[ch] == 0 for ch in KEYED), dups
    assert all(dups[ch] <= in_doubt[ch] for ch in CHANNELS), (dups, in_doubt)
