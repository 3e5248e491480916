"""``superintel stack``: run the embedded stack in the foreground until Ctrl-C or SIGTERM.

A plain function (not a click/faust command) so the CLI module can wire it however it likes and tests
can drive it as a subprocess. It prints the variables in ``NAME=value`` form so an operator can paste
them into another shell (``export ...``) to point workers at this stack.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from devstack.stack import EmbeddedStack, StackError

PrintFn = Callable[[str], object]

#: how often the supervisor checks that the parts it started are still alive
_WATCH_INTERVAL = 1.0


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``stop.set()`` so shutdown is one orderly path, never a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _announce(stack: EmbeddedStack, print_fn: PrintFn) -> None:
    for name, value in stack.env().items():
        print_fn(f"{name}={value}")
    started = ", ".join(stack.started) or "nothing (all parts come from the environment)"
    print_fn(f"started: {started} (run dir {stack.run_dir}); Ctrl-C to stop")


def _supervise(stack: EmbeddedStack, stop: threading.Event, print_fn: PrintFn) -> int:
    """Wait for a stop request; a part dying on its own ends the run with an error and its log."""
    while not stop.wait(_WATCH_INTERVAL):
        for name in stack.dead():
            part = stack.processes[name]
            print_fn(f"{name} exited unexpectedly (code {part.proc.returncode}); log {part.log_path}:")
            print_fn(part.log_tail())
            return 1
    return 0


def run_stack(print_fn: PrintFn = print, run_dir: Path | str | None = None) -> int:
    """Start the stack, print where it is, block until Ctrl-C/SIGTERM, stop it; returns an exit code."""
    stop = threading.Event()
    stack = EmbeddedStack(run_dir)
    with _stop_on_signals(stop):
        try:
            stack.start()
        except StackError as exc:
            print_fn(f"stack failed to start: {exc}")
            return 1
        try:
            _announce(stack, print_fn)
            code = _supervise(stack, stop, print_fn)
        finally:
            stack.stop()
    print_fn("stack stopped")
    return code
