"""Venue simulators for the embedded stack (``make run``), started in this process.

A venue whose URL is already configured in the environment (a testnet, a real bridge) is used
as it is; otherwise its simulator starts on a free loopback port with throwaway credentials,
and ``env()`` hands the worker the variables that point its adapter there.
"""

from __future__ import annotations

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
            self._binance = BinanceSimulator(api_key=key, api_secret=secret, tick_interval_ms=self._tick_ms)
            url = await self._binance.start()
            self._env.update(
                BINANCE_ENABLED="true",
                BINANCE_BASE_URL=url,
                BINANCE_API_KEY=key,
                BINANCE_API_SECRET=secret,
                BINANCE_POLL_INTERVAL=str(self._poll),
            )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._binance is not None:
            await self._binance.stop()

    def env(self) -> dict[str, str]:
        return dict(self._env)

    def describe(self) -> list[str]:
        if self._binance is not None:
            return [f"binance   simulator {self._binance.base_url} (spot REST, signed, ccxt)"]
        return [f"binance   {os.environ['BINANCE_BASE_URL']} (from BINANCE_BASE_URL)"]
