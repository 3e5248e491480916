"""``superintel stack``: the embedded stack and the venue simulators in the foreground until Ctrl-C/SIGTERM.

It starts what the environment does not provide (Kafka on Tansu, PostgreSQL, Redis, the Binance
simulator, the TWS simulator that stands in for IB Gateway, the MT4 bridge simulator), creates the
pipeline's topics with their final partition count, and prints the environment a worker needs as
shell ``export`` lines; every other line is a ``#`` comment, so the whole output can be pasted into
another shell. The same lines go to ``<run dir>/stack.env`` (removed on stop), so another shell
can ``. .superintel/run/stack.env`` and then run ``superintel worker`` and ``superintel signal send
...`` against this stack.

Only what was started here is printed: a part taken from the environment is already in the
operator's shell, and its URL may carry a password. The simulator's credentials are throwaway ones
made up at start, so printing them is harmless; a real venue's secrets are never printed, because a
configured venue (``BINANCE_BASE_URL`` set; ``IBKR_HOST`` or ``IBKR_PORT`` for a real gateway;
``MT4_BASE_URL`` for a real bridge) gets no simulator and nothing of it is echoed. With the TWS
simulator the exports enable IBKR (``IBKR_ENABLED``, ``IBKR_HOST``, ``IBKR_PORT``, the client id and
master client id), so equities, options and futures sent by hand trade on "IBKR"; with the MT4
bridge simulator they enable MT4 (``MT4_ENABLED``, ``MT4_BASE_URL``, a throwaway ``MT4_API_TOKEN``),
so FX trades on "MT4".
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from devstack.stack import DATABASE_ENV, KAFKA_ENV, REDIS_ENV, EmbeddedStack, StackError, create_topics
from devstack.venues_embedded import EmbeddedVenues
from streams.settings import get_settings
from streams.topics import ALL_TOPICS

PrintFn = Callable[[str], object]

#: how often the supervisor checks that the parts it started are still alive
_WATCH_INTERVAL = 1.0
#: the line that ends the announcement: everything above it is the environment
READY_LINE = "# ready; Ctrl-C to stop"
ENV_FILE = "stack.env"
_PART_ENV = {"kafka": KAFKA_ENV, "postgres": DATABASE_ENV, "redis": REDIS_ENV}


def export_lines(env: Mapping[str, str]) -> list[str]:
    """``export NAME=value`` lines a POSIX shell can evaluate, values quoted where needed."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


@contextlib.contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``stop.set()`` so shutdown is one orderly path, never a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in sigs:
            loop.remove_signal_handler(sig)


def _started_env(stack: EmbeddedStack, venues: EmbeddedVenues) -> dict[str, str]:
    """The variables that point a worker at what this command started, and only that."""
    env = {_PART_ENV[name]: stack.env()[_PART_ENV[name]] for name in stack.started}
    env.update(venues.env())
    return env


def _announce(stack: EmbeddedStack, venues: EmbeddedVenues, env_file: Path, print_fn: PrintFn) -> None:
    env = _started_env(stack, venues)
    given = [var for var in _PART_ENV.values() if var not in env]
    print_fn(f"# superintel stack (run dir {stack.run_dir})")
    for line in venues.describe():
        print_fn(f"# {line}")
    if given:
        print_fn(f"# taken from your environment, not repeated here: {', '.join(given)}")
    for line in export_lines(env):
        print_fn(line)
    print_fn(f"# the same exports are in {env_file}; in another shell: . {shlex.quote(str(env_file))}")
    print_fn("# then: superintel worker   and: superintel signal send BTC-USDT buy 0.05 --type limit --limit 64950.5")
    if venues.tws is not None:
        print_fn("# equities, options, futures on IBKR (TWS simulator): superintel signal send SPY buy 10 --ref 600")
        print_fn(f"# IB Gateway's nightly restart by hand: curl -X POST {venues.tws.control_url}/_sim/restart "
                 "-d '{\"seconds\": 5}'")
    if venues.mt4 is not None:
        print_fn("# FX on MT4 (bridge simulator; quantity in base-currency units): "
                 "superintel signal send EURUSD buy 10000")
    print_fn(READY_LINE)


def _write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """Owner-only: it holds the simulator's (throwaway) API secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text("".join(f"{line}\n" for line in export_lines(env)))


async def _supervise(stack: EmbeddedStack, stop: asyncio.Event, print_fn: PrintFn) -> int:
    """Wait for a stop request; a part dying on its own ends the run with an error and its log."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _WATCH_INTERVAL)
            return 0
        for name in stack.dead():
            part = stack.processes[name]
            print_fn(f"# {name} exited unexpectedly (code {part.proc.returncode}); log {part.log_path}:")
            print_fn("\n".join(f"# {line}" for line in part.log_tail().splitlines()))
            return 1


async def serve_stack(print_fn: PrintFn = print, run_dir: Path | str | None = None) -> int:
    """Start stack + simulators, announce them, serve until a stop signal, stop everything."""
    stop = asyncio.Event()
    with _stop_on_signals(asyncio.get_running_loop(), stop):
        async with contextlib.AsyncExitStack() as running:
            try:
                stack = await running.enter_async_context(EmbeddedStack(run_dir))
                await create_topics(stack.kafka_bootstrap, ALL_TOPICS, get_settings().topic_partitions)
                venues = await running.enter_async_context(EmbeddedVenues())
            except (StackError, OSError) as exc:
                print_fn(f"# stack failed to start: {exc}")
                return 1
            env_file = stack.run_dir / ENV_FILE
            _write_env_file(env_file, _started_env(stack, venues))
            running.callback(env_file.unlink, missing_ok=True)
            _announce(stack, venues, env_file, print_fn)
            code = await _supervise(stack, stop, print_fn)
    print_fn("# stack stopped")
    return code


def run_stack(print_fn: PrintFn = print, run_dir: Path | str | None = None) -> int:
    """Blocking entry point for the CLI; returns an exit code.

    Runs on its own event loop in the calling thread (the main thread from the CLI): the stack's
    children die with the thread that started them, and the simulators live on this loop.
    """
    return asyncio.run(serve_stack(print_fn, run_dir))
