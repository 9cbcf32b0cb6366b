"""A local Schema Registry: Apicurio Registry, which serves the Confluent API under
``/apis/ccompat/v7``, started from its Maven Central distribution (no Docker needed).

Apicurio Registry 3.0.9 is the last release that runs on Java 17 (3.1 and later are built for
Java 21). Its distribution, ``io.apicurio:apicurio-registry-app:<version>:tar.gz:all`` (a Quarkus
runner jar and its ``lib/``), is fetched with Maven once and unpacked into
``<cache_dir>/apicurio-registry-<version>/``. Storage is in memory (H2): a restart starts empty,
as a test registry should. A JVM needs ~20 s to boot it cold on a small machine, so the first
``up`` also records a class-data-sharing archive (a training start, stopped cleanly); every
later start maps the classes from it and answers in a few seconds. Pid file and log live in
``<cache_dir>/registry-<port>/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from parley.kafka_local import terminate

GROUP, ARTIFACT = "io.apicurio", "apicurio-registry-app"
CCOMPAT = "/apis/ccompat/v7"


class RegistryError(RuntimeError):
    """The local registry could not be fetched or started."""


@dataclass(frozen=True)
class RegistryServer:
    """Where and how the local registry runs (``parley registry up --port``)."""

    cache_dir: Path
    version: str = "3.0.9"
    host: str = "127.0.0.1"
    port: int = 8081
    heap: str = "384m"
    start_timeout_s: float = 180.0

    @property
    def url(self) -> str:
        """The Confluent-compatible API: what ``PARLEY_KAFKA__SCHEMA_REGISTRY_URL`` names."""
        return f"http://{self.host}:{self.port}{CCOMPAT}"

    @property
    def dist(self) -> Path:
        return self.cache_dir / f"apicurio-registry-{self.version}"

    @property
    def jar(self) -> Path:
        return self.dist / f"{ARTIFACT}-{self.version}-runner.jar"

    @property
    def archive(self) -> Path:
        """The class-data-sharing archive (JDK-specific: a new JDK rebuilds it)."""
        return self.dist / f"classes-{_java_version()}.jsa"

    @property
    def home(self) -> Path:
        return self.cache_dir / f"registry-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "registry.pid"

    @property
    def log(self) -> Path:
        return self.home / "registry.log"


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when a Confluent-compatible registry at ``url`` lists its subjects."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/subjects", timeout=timeout_s) as resp:
            return resp.status == 200 and isinstance(json.loads(resp.read()), list)
    except (OSError, ValueError):
        return False


def up(s: RegistryServer) -> float:
    """Start the registry in the background unless it answers; wait for it; seconds taken."""
    t0 = time.monotonic()
    if answers(s.url):
        return 0.0
    with _locked(s):  # two test runs starting it at once: one fetches and starts, the other waits
        if answers(s.url):
            return time.monotonic() - t0
        ensure_dist(s)
        if not s.archive.exists():
            _train(s)
        proc = _start(s, f"-XX:SharedArchiveFile={s.archive}")
        _wait(s, proc)
    return time.monotonic() - t0


def down(s: RegistryServer, timeout_s: float = 30.0) -> bool:
    """Stop the registry started by :func:`up`; True if one was running."""
    pid = _running_pid(s)
    if pid is None:
        return False
    terminate(pid, lambda: _running_pid(s) is not None, timeout_s)
    s.pid_file.unlink(missing_ok=True)
    return True


def ensure_dist(s: RegistryServer) -> Path:
    """Fetch and unpack the distribution unless it is cached; return its folder."""
    done = s.dist / ".complete"
    if done.exists():
        return s.dist
    if not shutil.which("mvn"):
        raise RegistryError("Maven (mvn) is not on PATH: install maven and a JDK 17")
    s.cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = s.cache_dir / f"{ARTIFACT}-{s.version}-all.tar.gz"
    # dependency:get 2.8 copies one artifact (no parent pom needed) from the local repository
    cmd = ["mvn", "-q", "-B", "org.apache.maven.plugins:maven-dependency-plugin:2.8:get",
           f"-Dartifact={GROUP}:{ARTIFACT}:{s.version}:tar.gz:all", "-Dtransitive=false", f"-Ddest={tarball}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not tarball.exists():
        raise RegistryError(f"mvn failed ({res.returncode}): {res.stdout[-2000:]}{res.stderr[-2000:]}")
    shutil.rmtree(s.dist, ignore_errors=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(s.dist, filter="data")
    tarball.unlink()
    if not s.jar.exists():
        raise RegistryError(f"{s.jar.name} is not in the distribution of {s.version}")
    done.write_text(s.version)
    return s.dist


def _train(s: RegistryServer) -> None:
    """Boot once, exercise the API, stop cleanly: the JVM writes the classes it loaded. On a
    port of its own, so nobody starts using a registry that is about to stop."""
    trainee = replace(s, port=_free_port(s.host))
    tmp = s.archive.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    proc = _start(trainee, f"-XX:ArchiveClassesAtExit={tmp}")
    try:
        _wait(trainee, proc)
        _exercise(trainee.url)
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(trainee.home, ignore_errors=True)
    if tmp.exists():  # without it, starts are slow but still work
        tmp.replace(s.archive)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _exercise(url: str) -> None:
    """Register, look up and check a schema: the classes of the calls Parley makes."""
    from schemas.registry import RegistryClient

    client = RegistryClient(url)
    subject, schema = "parley.warmup-Warmup", json.dumps(
        {"type": "record", "name": "Warmup", "fields": [{"name": "a", "type": "int"}]})
    schema_id = client.register(subject, schema)
    client.lookup(subject, schema)
    client.schema(schema_id)
    client.set_compatibility(subject, "BACKWARD_TRANSITIVE")
    client.compatible(subject, schema)


def _java_version() -> str:
    java = shutil.which("java")
    if not java:
        raise RegistryError("java is not on PATH: install a JDK 17")
    return Path(os.path.realpath(java)).parent.parent.name  # e.g. java-17-openjdk-amd64


def _start(s: RegistryServer, cds: str) -> subprocess.Popen:
    java = shutil.which("java")
    if not java:
        raise RegistryError("java is not on PATH: install a JDK 17")
    s.home.mkdir(parents=True, exist_ok=True)
    if s.log.exists():
        s.log.replace(s.log.with_suffix(".log.1"))  # one previous run kept
    cmd = [java, f"-Xmx{s.heap}", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", cds,
           f"-Dquarkus.http.host={s.host}", f"-Dquarkus.http.port={s.port}",
           "-Dquarkus.http.access-log.enabled=false", "-jar", str(s.jar)]
    with open(s.log, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=s.home, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    s.pid_file.write_text(str(proc.pid))
    return proc


def _wait(s: RegistryServer, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + s.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RegistryError(f"the registry exited during start; see {s.log}:\n{_tail(s.log)}")
        if answers(s.url, 1.0):
            return
        time.sleep(0.2)
    proc.kill()
    raise RegistryError(f"the registry did not answer within {s.start_timeout_s}s; see {s.log}")


def _running_pid(s: RegistryServer) -> int | None:
    try:
        pid = int(s.pid_file.read_text().strip() or 0)
        os.kill(pid, 0)
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid  # no /proc (macOS): trust the pid
    ours = str(s.jar).encode() in cmdline and f"-Dquarkus.http.port={s.port}".encode() in cmdline
    return pid if ours else None  # a stale pid file: the number now names another process


@contextmanager
def _locked(s: RegistryServer) -> Iterator[None]:
    s.cache_dir.mkdir(parents=True, exist_ok=True)
    with open(s.cache_dir / "registry.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""
