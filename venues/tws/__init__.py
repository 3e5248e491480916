"""A TWS / IB Gateway simulator that real ib_async talks to over TCP (TWS API, server version 176).

* ``wire``: framing (4-byte length + NUL-terminated fields) and the handshake;
* ``messages``: the v176 layouts of every message the simulator reads and writes;
* ``contracts``: the instrument table (SPY, GBTC, AAPL, an SPY option, ES future, EURUSD) and
  IB-style contract matching;
* ``orders`` / ``engine``: ``TwsEngine``, the back end with no I/O (orders per client id,
  brackets, OCA, fills on the shared price path, executions, positions, commissions);
* ``server``: ``TwsSimulator``, sessions and client ids (326, the master client id) behind the
  shared faults, stats and ``/_sim`` control endpoints, plus ``POST /_sim/restart``;
* ``cli``: ``main(argv)``, run standalone (``superintel venue tws --port 4002``).

In a test: ``sim = TwsSimulator(tick_interval=None); port = await sim.start()`` ... ``await sim.stop()``,
or ``async with running(...) as sim``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from venues.common.faults import Fault, Faults, Op
from venues.common.prices import PricePath
from venues.common.stats import SimStats
from venues.tws.contracts import (
    AAPL,
    DEFAULT_INSTRUMENTS,
    ES_FUTURE,
    EURUSD,
    GBTC,
    SPY,
    SPY_OPTION,
    Instrument,
)
from venues.tws.engine import DEFAULT_ACCOUNT, ExecFilter, TwsEngine, TwsError
from venues.tws.server import TwsSimulator

__all__ = [
    "AAPL",
    "DEFAULT_ACCOUNT",
    "DEFAULT_INSTRUMENTS",
    "ES_FUTURE",
    "EURUSD",
    "GBTC",
    "SPY",
    "SPY_OPTION",
    "ExecFilter",
    "Fault",
    "Faults",
    "Instrument",
    "Op",
    "PricePath",
    "SimStats",
    "TwsEngine",
    "TwsError",
    "TwsSimulator",
    "main",
    "running",
]


@contextlib.asynccontextmanager
async def running(host: str = "127.0.0.1", port: int = 0, control_port: int | None = None,
                  **knobs: Any) -> AsyncIterator[TwsSimulator]:
    """A started ``TwsSimulator(**knobs)`` (free ports by default), stopped on exit."""
    sim = TwsSimulator(**knobs)
    await sim.start(host, port, control_port)
    try:
        yield sim
    finally:
        await sim.stop()


def __getattr__(name: str) -> Any:
    """``main`` is imported on first use (``python -m venues.tws.cli`` must not find it imported)."""
    if name == "main":
        from venues.tws.cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
