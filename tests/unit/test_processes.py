"""parley.processes: copies of a service, supervised (real processes, no broker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from parley import processes
from tests.waiting import wait_until


def exit_with(code: int) -> None:
    sys.exit(code)


def fail_once(marker: str) -> None:
    """Fails the first time (no marker yet), succeeds the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text("ran")
        sys.exit(3)


def sleep_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)


def test_copies_that_end_cleanly_give_zero_and_a_failing_copy_gives_its_code() -> None:
    assert processes.supervise("ok", exit_with, [(0,), (0,)]) == 0
    assert processes.supervise("bad", exit_with, [(0,), (3,)]) == 3


def test_a_copy_that_dies_is_started_again_when_restarting(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert processes.supervise("flaky", fail_once, [(str(marker),)], restart=True) == 0
    assert marker.read_text() == "ran"


def test_copies_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = (f"import sys; sys.path[:0] = {sys.path!r}\n"
            "from parley import processes\n"
            "from tests.unit.test_processes import sleep_forever\n"
            "if __name__ == '__main__':\n"
            f"    processes.supervise('sleeper', sleep_forever, [({str(pid_file)!r},)])\n")
    script = tmp_path / "supervisor.py"
    script.write_text(code)
    supervisor = subprocess.Popen([sys.executable, str(script)], cwd=Path(__file__).parents[2])
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=30), "the copy never started"
        child = int(pid_file.read_text())
        supervisor.kill()  # SIGKILL: the supervisor cannot tell its copies
        supervisor.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            return False
        assert wait_until(gone, timeout=10), "the copy ran on after its supervisor was killed"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        if pid_file.exists() and pid_file.read_text():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
