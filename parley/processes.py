"""Several processes of one service: Python runs one thread of work per process at a time, so a
service that must use more than one core (the ingress, the stream worker) runs copies of itself.

``supervise`` starts the copies (``spawn``: each imports afresh, nothing shared but what is
pickled), forwards SIGTERM/SIGINT to them so they shut down cleanly, and waits for them. With
``restart``, a copy that dies while the service is not stopping is started again after a pause
(as Kafka Streams replaces a dead stream thread); without, the service stops when one dies.
Each copy calls ``watch_parent`` first: if the supervisor is killed, its copies stop cleanly
instead of running on as orphans.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from parley import logs

log = logs.get("parley.processes")
RESTART_PAUSE_S = 1.0


def supervise(name: str, target: Callable[..., None], args: Sequence[tuple[Any, ...]], *,
              restart: bool = False) -> int:
    """Run ``target(*a)`` in a process for each ``a`` in ``args``; returns the exit code (0 when
    stopped by a signal or when every copy ended cleanly)."""
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start(i: int) -> BaseProcess:
        p = ctx.Process(target=_child, args=(os.getpid(), target, args[i]), name=f"{name}-{i}", daemon=False)
        p.start()
        return p

    def stop(_signum: int, _frame: Any) -> None:
        stopping.set()
        for p in children:
            if p.is_alive():
                p.terminate()  # SIGTERM: the copy finishes its work in hand and leaves

    children = [start(i) for i in range(len(args))]
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    done = [False] * len(children)
    try:
        while not all(done):
            for i, p in enumerate(children):
                if done[i]:
                    continue
                p.join(0.1)
                if p.is_alive():
                    continue
                if p.exitcode != 0 and not stopping.is_set():
                    log.error("process.died", process=p.name, exitcode=p.exitcode, restart=restart)
                    if restart:
                        time.sleep(RESTART_PAUSE_S)
                        children[i] = start(i)
                        continue
                    code = p.exitcode if p.exitcode and p.exitcode > 0 else 1
                    stop(signal.SIGTERM, None)
                done[i] = True
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in children:
            p.join(30)
            if p.is_alive():
                p.kill()
    return code


def _child(parent: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    watch_parent(parent)
    target(*args)


def watch_parent(parent: int, every_s: float = 0.5) -> None:
    """Send this process SIGTERM (its clean shutdown) once ``parent`` is gone."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
