"""A single-node KRaft Apache Kafka broker started from Apache Kafka's own jars.

For machines with a JDK and Maven but no Docker engine. The jars
(``org.apache.kafka:kafka_<scala>:<version>`` and its runtime dependencies) are fetched from
Maven Central into ``<cache_dir>/kafka-<version>/libs`` once; the broker's storage, config,
pid file and log live in ``<cache_dir>/broker-<port>/``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from parley.settings import BrokerSettings

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>parley</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId><version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
"""

LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.coordinator=WARN
log4j.logger.kafka.log=WARN
"""


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted or started."""


@dataclass(frozen=True)
class BrokerPaths:
    libs: Path
    home: Path

    @property
    def config(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.home / "log4j.properties"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def pid(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log(self) -> Path:
        return self.home / "broker.log"


def paths(s: BrokerSettings) -> BrokerPaths:
    return BrokerPaths(
        libs=s.cache_dir / f"kafka-{s.kafka_version}" / "libs",
        home=s.cache_dir / f"broker-{s.port}",
    )


def server_properties(s: BrokerSettings, data_dir: Path) -> str:
    """A broker+controller config for one node on loopback, sized for a laptop or CI.

    Topics are never auto-created: the catalogue (`parley topics apply`) creates them.
    """
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{s.host}:{s.controller_port}",
            f"listeners=PLAINTEXT://{s.host}:{s.port},CONTROLLER://{s.host}:{s.controller_port}",
            f"advertised.listeners=PLAINTEXT://{s.host}:{s.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=10",
            "group.initial.rebalance.delay.ms=0",
            "unclean.leader.election.enable=false",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            "",
        ]
    )


def ensure_jars(s: BrokerSettings) -> Path:
    """Fetch the broker's jars with Maven unless they are cached already; return the folder."""
    p = paths(s)
    done = p.libs / ".complete"
    if done.exists():
        return p.libs
    if not shutil.which("mvn"):
        raise BrokerError("Maven (mvn) is not on PATH: install maven and a JDK 17")
    work = p.libs.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(POM.format(scala=s.scala_version, version=s.kafka_version))
    cmd = [
        "mvn", "-q", "-B", "-f", str(work / "pom.xml"),
        "dependency:copy-dependencies", f"-DoutputDirectory={p.libs}", "-DincludeScope=runtime",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BrokerError(f"mvn failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    done.write_text(s.kafka_version)
    return p.libs


def _java(s: BrokerSettings, libs: Path, *args: str) -> list[str]:
    java = shutil.which("java")
    if not java:
        raise BrokerError("java is not on PATH: install a JDK 17")
    return [
        java, f"-Xmx{s.heap}", "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{paths(s).log4j}", "-cp", f"{libs}/*", *args,
    ]


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(s: BrokerSettings, libs: Path) -> None:
    """Write the config and format the KRaft storage once."""
    p = paths(s)
    p.home.mkdir(parents=True, exist_ok=True)
    p.config.write_text(server_properties(s, p.data))  # rewritten each start: config follows code
    p.log4j.write_text(LOG4J)
    if (p.data / "meta.properties").exists():
        return
    cmd = _java(s, libs, "kafka.tools.StorageTool", "format", "-t", _cluster_id(),
                "-c", str(p.config), "--ignore-formatted")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BrokerError(f"StorageTool format failed: {res.stdout[-2000:]}{res.stderr[-2000:]}")


def answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when a Kafka broker at ``bootstrap`` answers a metadata request."""
    return asyncio.run(_answers(bootstrap, timeout_s))


async def _answers(bootstrap: str, timeout_s: float) -> bool:
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a refused probe is an answer
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception:
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            pass


def _running_pid(s: BrokerSettings) -> int | None:
    pid_file = paths(s).pid
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip() or 0)
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return None
    if not _is_our_broker(pid, paths(s).config):
        return None  # a stale pid file from a machine restart; the number now names another process
    return pid


def _is_our_broker(pid: int, config: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return b"kafka.Kafka" in cmdline and str(config).encode() in cmdline


def up(s: BrokerSettings, fresh: bool = False) -> float:
    """Start the broker in the background and wait until it answers; return seconds taken.

    ``fresh`` wipes the storage of a stopped broker first (CI, or after many test runs: a
    broker with thousands of leftover partitions takes minutes to recover its logs at start).
    """
    t0 = time.monotonic()
    bootstrap = f"{s.host}:{s.port}"
    if answers(bootstrap, 2.0):
        return 0.0
    if fresh and _running_pid(s) is None:
        wipe(s)
    libs = ensure_jars(s)
    format_storage(s, libs)
    p = paths(s)
    proc: subprocess.Popen | None = None
    if _running_pid(s) is None:
        if p.log.exists():
            p.log.replace(p.log.with_suffix(".log.1"))  # one previous run kept
        log = open(p.log, "wb")
        proc = subprocess.Popen(
            _java(s, libs, "kafka.Kafka", str(p.config)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        p.pid.write_text(str(proc.pid))
    t_start = time.monotonic()
    while time.monotonic() - t_start < s.start_timeout_s:
        alive = proc.poll() is None if proc is not None else _running_pid(s) is not None
        if not alive:
            raise BrokerError(f"broker exited during start; see {p.log}:\n{_tail(p.log)}")
        if answers(bootstrap, 2.0):
            return time.monotonic() - t0
        time.sleep(0.3)
    raise BrokerError(f"broker did not answer within {s.start_timeout_s}s; see {p.log}")


def down(s: BrokerSettings, timeout_s: float = 30.0) -> bool:
    """Stop the broker started by :func:`up`; True if one was running."""
    pid = _running_pid(s)
    if pid is None:
        return False
    terminate(pid, lambda: _running_pid(s) is not None, timeout_s)
    paths(s).pid.unlink(missing_ok=True)
    return True


def terminate(pid: int, running: Callable[[], bool], timeout_s: float) -> None:
    """SIGTERM ``pid``, wait up to ``timeout_s`` while ``running()``, then SIGKILL it (a local
    JVM we started: the broker, the registry)."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running():
        time.sleep(0.1)
    if running():
        os.kill(pid, signal.SIGKILL)


def wipe(s: BrokerSettings) -> None:
    """Delete the broker's storage (it must be stopped)."""
    if _running_pid(s) is not None:
        raise BrokerError("stop the broker before wiping its storage")
    shutil.rmtree(paths(s).home, ignore_errors=True)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""
