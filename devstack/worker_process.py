"""A ``superintel worker`` child process, for the demo, the pipeline tests and the benchmarks.

Runs the real worker exactly as an operator would (its own process, Faust's own CLI), so a test
can SIGKILL it mid-stream and start another, and nothing in-process hides a bug.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

READY_MARK = b"[^Worker]: Ready"


def _superintel() -> list[str]:
    """The installed console script beside this interpreter; unlike ``python -m`` it does not
    put the current directory on ``sys.path``, where a stray ``schemas/`` folder could shadow ours."""
    script = Path(sys.executable).with_name("superintel")
    return [str(script)] if script.exists() else [sys.executable, "-m", "streams.cli"]


class WorkerProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path, *, log_level: str = "info") -> None:
        self._env = {**os.environ, **env}
        self.log_path = log_path
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self._offset = self.log_path.stat().st_size
        self._proc = subprocess.Popen(
            [*_superintel(), "worker", "-l", self._log_level, "--without-web"],
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until Faust reports the worker ready (partitions assigned, agents started)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self._proc.returncode}:\n{self.tail()}")
            with open(self.log_path, "rb") as fh:
                fh.seek(self._offset)
                if READY_MARK in fh.read():
                    return
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing gets flushed or committed."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)
        self._close_log()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait for Faust's graceful shutdown; SIGKILL if it overstays."""
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(10)
        self._close_log()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
