"""A ``superintel worker`` child process, for the demo, the pipeline tests and the benchmarks.

Runs the real worker exactly as an operator would (its own process, Faust's own CLI), so a test
can SIGKILL it mid-stream and start another, and nothing in-process hides a bug. The process itself
is a ``ManagedProcess`` (devstack/stack.py), the one supervisor of every child the dev tools start:
own process group, log appended with a per-run offset, graceful stop then SIGKILL, and it dies with
the thread that started it (start workers from a long-lived thread, as the stack's parts).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from devstack.stack import ManagedProcess, spawn

READY_MARK = "[^Worker]: Ready"


def _superintel() -> list[str]:
    """The installed console script beside this interpreter; unlike ``python -m`` it does not
    put the current directory on ``sys.path``, where a stray ``schemas/`` folder could shadow ours."""
    script = Path(sys.executable).with_name("superintel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "streams.cli"]


class WorkerProcess:
    """One worker: ``start``, ``wait_ready``, then ``stop`` (graceful) or ``kill`` (the crash case)."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, log_level: str = "info") -> None:
        self._env = {**os.environ, **env}
        self.log_path = log_path
        self._log_level = log_level
        self._process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError("the worker is not started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> WorkerProcess:
        argv = [*_superintel(), "worker", "-l", self._log_level, "--without-web"]
        # SIGTERM: Faust's graceful shutdown (commit, stop agents) for the whole group
        self._process = spawn("worker", argv, self.log_path, stop_signal=signal.SIGTERM, env=self._env)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until Faust reports the worker ready (partitions assigned, agents started)."""
        part = self.process
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not part.alive():
                raise RuntimeError(f"worker exited with {part.proc.returncode}:\n{self.tail()}")
            if READY_MARK in part.output():
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def alive(self) -> bool:
        return self._process is not None and self._process.alive()

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing gets flushed or committed."""
        if self._process is not None:
            self._process.kill()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait for Faust's graceful shutdown; SIGKILL if it overstays."""
        if self._process is not None:
            self._process.stop(timeout)

    def tail(self, lines: int = 40) -> str:
        """The last lines this run of the worker wrote ("" before it started)."""
        return self._process.log_tail(lines) if self._process is not None else ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
