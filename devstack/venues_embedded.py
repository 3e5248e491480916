"""Venue simulators for the embedded stack (``make run``, ``make stack``), started in this process.

A venue whose address is already configured in the environment (a testnet, a real gateway) is
used as it is; otherwise its simulator starts on a free loopback port with throwaway credentials,
and ``env()`` hands the worker the variables that point its adapter there:

* Binance: the spot REST simulator unless ``BINANCE_BASE_URL`` is set.
* Interactive Brokers: the TWS simulator (``venues/tws``, the TWS API socket that ib_async
  speaks) unless ``IBKR_HOST`` or ``IBKR_PORT`` is set; EQUITY, OPTION and FUTURE then trade on
  "IBKR". Its "Master API client ID" is set, as on the seed's gateway, so an executor taking
  over another's orders hears about them by push.
* MT4: the REST bridge simulator (``venues/mt4``, what the httpx adapter speaks) unless
  ``MT4_BASE_URL`` is set; FX then trades on "MT4", with a throwaway bearer token.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Self

from venues.binance import BinanceSimulator
from venues.mt4 import Mt4Simulator
from venues.tws import TwsSimulator

#: the client ids the worker's IBKR adapter uses (first of its pool) and IB's master client id
IBKR_CLIENT_ID = 1
IBKR_MASTER_CLIENT_ID = 100
#: enough cash that a long demo or a session by hand is not refused by the cash account's margin
#: check (IB's 201); that rejection is covered by the adapter's contract tests
TWS_STARTING_CASH = Decimal(100_000_000)
#: the MT4 account's balance: a hedging account holds margin for every open ticket, so a long demo
#: needs room (MT4's 134 "not enough money" is covered by the adapter's contract tests)
MT4_BALANCE = Decimal(100_000_000)


@dataclass(frozen=True, slots=True)
class Restart:
    """One simulated nightly restart of the TWS simulator, as it happened (wall clock)."""

    started: float
    seconds: float
    dropped: int
    #: when a client was connected again (None: nobody reconnected before we stopped looking)
    reconnected: float | None = None


class EmbeddedVenues:
    def __init__(self, *, binance_poll_interval: float = 0.5, tick_ms: int = 250) -> None:
        self._poll = binance_poll_interval
        self._tick_ms = tick_ms
        self._binance: BinanceSimulator | None = None
        self._tws: TwsSimulator | None = None
        self._mt4: Mt4Simulator | None = None
        self._env: dict[str, str] = {}

    async def __aenter__(self) -> Self:
        try:
            if not os.environ.get("BINANCE_BASE_URL"):
                await self._start_binance()
            if not (os.environ.get("IBKR_HOST") or os.environ.get("IBKR_PORT")):
                await self._start_tws()
            if not os.environ.get("MT4_BASE_URL"):
                await self._start_mt4()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _start_binance(self) -> None:
        key, secret = secrets.token_hex(16), secrets.token_hex(32)
        # A generous weight budget: the demo shows the pipeline, not Binance's rate limits
        # (those are covered by the adapter's contract tests).
        self._binance = BinanceSimulator(api_key=key, api_secret=secret, tick_interval_ms=self._tick_ms,
                                         weight_limit_per_minute=1_000_000)
        url = await self._binance.start()
        self._env.update(
            BINANCE_ENABLED="true",
            BINANCE_BASE_URL=url,
            BINANCE_API_KEY=key,
            BINANCE_API_SECRET=secret,
            BINANCE_POLL_INTERVAL=str(self._poll),
            BINANCE_RATE_LIMIT_MS="1",
        )

    async def _start_tws(self) -> None:
        # IB's pacing (50 messages/s) would refuse part of a 100 signals/s burst with error 100:
        # the demo shows the pipeline, the pacing is covered by the venue contract suite
        self._tws = TwsSimulator(tick_interval=self._tick_ms / 1000, starting_cash=TWS_STARTING_CASH,
                                 master_client_id=IBKR_MASTER_CLIENT_ID, max_messages_per_second=None)
        port = await self._tws.start("127.0.0.1", 0)
        self._env.update(
            IBKR_ENABLED="true",
            IBKR_HOST="127.0.0.1",
            IBKR_PORT=str(port),
            IBKR_CLIENT_ID=str(IBKR_CLIENT_ID),
            IBKR_MASTER_CLIENT_ID=str(IBKR_MASTER_CLIENT_ID),
        )

    async def _start_mt4(self) -> None:
        token = secrets.token_hex(16)
        self._mt4 = Mt4Simulator(balance=MT4_BALANCE, api_token=token, tick_interval=self._tick_ms / 1000)
        url = await self._mt4.start()
        self._env.update(
            MT4_ENABLED="true",
            MT4_BASE_URL=url,
            MT4_API_TOKEN=token,
            MT4_POLL_INTERVAL=str(self._poll),
        )

    async def _stop(self) -> None:
        if self._mt4 is not None:
            await self._mt4.stop()
        if self._tws is not None:
            await self._tws.stop()
        if self._binance is not None:
            await self._binance.stop()

    @property
    def can_fail(self) -> bool:
        """Only a simulator we started can be made to fail; a configured venue is left alone."""
        return self._binance is not None

    @property
    def mt4(self) -> Mt4Simulator | None:
        """The MT4 bridge simulator started here (None: MT4_BASE_URL points elsewhere)."""
        return self._mt4

    @property
    def tws(self) -> TwsSimulator | None:
        """The TWS simulator started here (None: IBKR is configured elsewhere)."""
        return self._tws

    async def binance_outage(self, seconds: float) -> None:
        """Every Binance request answers HTTP 503 for ``seconds`` (the simulator's ``fail_rate``
        at 1, as ``POST /_sim/faults`` would set it): the worker's breaker opens, crypto orders go
        to paper with the reason, and a half-open probe brings Binance back."""
        if self._binance is None:
            return
        self._binance.faults.update({"fail_rate": 1.0})
        try:
            await asyncio.sleep(seconds)
        finally:
            self._binance.faults.update({"fail_rate": 0.0})

    async def tws_restart(self, seconds: float, *, reconnect_within: float = 30.0,
                          while_down: Callable[[TwsSimulator], object] | None = None) -> Restart | None:
        """The nightly restart of IB Gateway (``POST /_sim/restart``): every connection dropped
        and the port closed for ``seconds`` while orders keep working (and filling) at "IB";
        ``while_down(sim)`` runs right after the drop (move the market). Returns once a client is
        connected again (or ``reconnect_within`` seconds after the port reopened). None when the
        TWS simulator is not ours."""
        sim = self._tws
        if sim is None:
            return None
        started = time.time()
        dropped = await sim.restart(seconds)
        if while_down is not None:
            while_down(sim)
        deadline = time.monotonic() + seconds + reconnect_within
        await asyncio.sleep(seconds)
        while time.monotonic() < deadline:
            if sim.connected_clients:
                return Restart(started, seconds, dropped, time.time())
            await asyncio.sleep(0.05)
        return Restart(started, seconds, dropped)

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def describe(self) -> list[str]:
        lines = []
        if self._binance is not None:
            lines.append(f"binance   simulator {self._binance.base_url} (spot REST, signed, ccxt)")
        else:
            lines.append(f"binance   {os.environ['BINANCE_BASE_URL']} (from BINANCE_BASE_URL)")
        if self._tws is not None:
            lines.append(f"ibkr      TWS simulator {self._tws.host}:{self._tws.port} (TWS API v176, ib_async; "
                         f"master client id {self._tws.master_client_id}; control {self._tws.control_url}/_sim)")
        else:
            lines.append(f"ibkr      {os.environ.get('IBKR_HOST', '127.0.0.1')}:{os.environ.get('IBKR_PORT', '4002')} "
                         "(from IBKR_HOST/IBKR_PORT)")
        if self._mt4 is not None:
            url = self._mt4.base_url
            lines.append(f"mt4       bridge simulator {url} (REST, httpx, bearer token; control {url}/_sim)")
        else:
            lines.append(f"mt4       {os.environ['MT4_BASE_URL']} (from MT4_BASE_URL)")
        return lines
