"""Venue simulators for the embedded stack (``make run``), started in this process.

A venue whose URL is already configured in the environment (a testnet, a real bridge) is used
as it is; otherwise its simulator starts on a free loopback port with throwaway credentials,
and ``env()`` hands the worker the variables that point its adapter there.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from types import TracebackType
from typing import Self

from venues.binance import BinanceSimulator


class EmbeddedVenues:
    def __init__(self, *, binance_poll_interval: float = 0.5, tick_ms: int = 250) -> None:
        self._poll = binance_poll_interval
        self._tick_ms = tick_ms
        self._binance: BinanceSimulator | None = None
        self._env: dict[str, str] = {}

    async def __aenter__(self) -> Self:
        if not os.environ.get("BINANCE_BASE_URL"):
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
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._binance is not None:
            await self._binance.stop()

    @property
    def can_fail(self) -> bool:
        """Only a simulator we started can be made to fail; a configured venue is left alone."""
        return self._binance is not None

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

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def describe(self) -> list[str]:
        if self._binance is not None:
            return [f"binance   simulator {self._binance.base_url} (spot REST, signed, ccxt)"]
        return [f"binance   {os.environ['BINANCE_BASE_URL']} (from BINANCE_BASE_URL)"]
