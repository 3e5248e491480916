"""``superintel nav feed`` as an operator runs it: a real subprocess building NavQuotes from the
venues' market data (GBTC from IBKR, here the TWS simulator over ib_async; BTC-USDT from Binance,
the simulator over ccxt) and publishing them to ``nav.quotes`` on a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path

import pytest_asyncio

from devstack.stack import create_topics
from devstack.topics import read_topic
from schemas import NavQuote
from streams.topics import NAV_QUOTES
from tests.fixtures.binance import SIM_API_KEY, SIM_API_SECRET, STILL
from venues.binance import BinanceSimulator
from venues.tws import TwsSimulator

SUPERINTEL = str(Path(sys.executable).with_name("superintel"))


@pytest_asyncio.fixture(loop_scope="session")
async def venues() -> AsyncIterator[tuple[TwsSimulator, BinanceSimulator]]:
    tws = TwsSimulator(price_path=STILL, tick_interval=None)
    binance = BinanceSimulator(api_key=SIM_API_KEY, api_secret=SIM_API_SECRET, price_path=STILL)
    await tws.start()
    await binance.start()
    yield tws, binance
    await binance.stop()
    await tws.stop()


async def test_nav_feed_publishes_quotes_from_the_trust_and_spot_venues(
        kafka_bootstrap: str, topic_prefix: str, venues: tuple[TwsSimulator, BinanceSimulator]) -> None:
    tws, binance = venues
    await create_topics(kafka_bootstrap, [NAV_QUOTES], 4)
    pair = f"{topic_prefix}GBTC-BTC".replace("_", "-")[:100]
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap,
           "IBKR_ENABLED": "true", "IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(tws.port), "IBKR_CLIENT_ID": "31",
           "IBKR_CONNECT_TIMEOUT": "5", "IBKR_REQUEST_TIMEOUT": "5",
           "BINANCE_ENABLED": "true", "BINANCE_BASE_URL": binance.base_url, "BINANCE_API_KEY": SIM_API_KEY,
           "BINANCE_API_SECRET": SIM_API_SECRET}
    result = await asyncio.to_thread(
        subprocess.run, [SUPERINTEL, "nav", "feed", pair, "--trust", "GBTC", "--spot", "BTC-USDT",
                         "--holdings", "0.00089", "--interval", "0.2", "--count", "3"],
        capture_output=True, text=True, timeout=90, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stderr.strip().splitlines()[-1]) == {"published": 3, "pair": pair}

    records = await read_topic(kafka_bootstrap, NAV_QUOTES, 3, 30, where=lambda r: r.key == pair.encode())
    quotes = [NavQuote.model_validate_json(r.value) for r in records]
    assert len(quotes) == 3 and len({r.partition for r in records}) == 1  # keyed by pair: one partition
    assert [q.ts for q in quotes] == sorted({q.ts for q in quotes})  # strictly increasing
    for q in quotes:
        assert (q.pair, q.trust_symbol, q.spot_symbol) == (pair, "GBTC", "BTC-USDT")
        assert abs(q.trust_price - D("75")) <= D("0.75"), q  # the TWS simulator's GBTC
        assert q.spot_price is not None and abs(q.spot_price - D("60000")) <= D("60"), q  # Binance's BTC
        assert q.nav_per_share == D("0.00089") * q.spot_price  # NAV = holdings per share x spot
