"""The NAV-arbitrage part of ``superintel demo`` (issue 15): a synthetic GBTC premium that crosses
both thresholds, traded by the worker's nav-arb agent, then summarised from the database.

The premium is played on the market itself: each tick reads BTC-USDT from the Binance venue (its
public book ticker), computes GBTC's NAV (holdings per share x BTC) and moves GBTC on the TWS
simulator to ``NAV x (1 + premium)``; the quote is then built by the feeder's own library
(``execution/nav_feed.py``) from the two venues' prices. So the legs the agent sends fill at the
prices its quotes saw, and the pair's P&L is the premium it captured (less the spread and fees,
and what BTC moved between the legs). The path: calm, a +3.5 % premium (sell GBTC, buy BTC), back
to calm (exit), a -3.5 % discount (buy GBTC, sell BTC), back to calm (exit); with the default
window (60 quotes, 30 before any decision) that is about 120 quotes.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from rich.console import Console, Group
from rich.table import Table

from devstack.venues_embedded import EmbeddedVenues
from execution.clock import SYSTEM_CLOCK
from execution.nav_feed import NavPairSpec, nav_quotes
from execution.ports import Quote
from streams.topics import NAV_QUOTES
from venues.tws import TwsSimulator

#: BTC per GBTC share (the order of magnitude of Grayscale's published holdings)
HOLDINGS = Decimal("0.00089")
INTERVAL = 0.15


def premium_path(seed: int) -> list[float]:
    """Calm noise, a premium excursion, calm, a discount excursion, calm."""
    rng = random.Random(seed)

    def calm(n: int, sd: float = 0.002) -> list[float]:
        return [rng.gauss(0, sd) for _ in range(n)]

    return [*calm(40), 0.035, 0.034, 0.032, 0.03, *calm(3, 0.0006), *calm(45),
            -0.035, -0.034, -0.033, -0.03, *calm(3, 0.0006), *calm(25)]


class BinanceBook:
    """BTC-USDT from the Binance venue's public book ticker (the simulator, or the real one)."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=5.0)

    async def quote(self, symbol: str) -> Quote | None:
        market = symbol.replace("-", "").replace("/", "").upper()
        response = await self._client.get("/api/v3/ticker/bookTicker", params={"symbol": market})
        response.raise_for_status()
        book = response.json()
        return Quote(symbol, Decimal(book["bidPrice"]), Decimal(book["askPrice"]), None)

    async def close(self) -> None:
        await self._client.aclose()


class PremiumMarket:
    """GBTC on the TWS simulator, moved to NAV x (1 + the next premium) each time it is asked."""

    def __init__(self, tws: TwsSimulator, spot: BinanceBook, spot_symbol: str, path: list[float]) -> None:
        self._tws = tws
        self._spot = spot
        self._spot_symbol = spot_symbol
        self._path: Iterator[float] = iter(path)

    async def quote(self, symbol: str) -> Quote | None:
        spot = await self._spot.quote(self._spot_symbol)
        if spot is None or spot.mid is None:
            return None
        premium = next(self._path)
        price = self._tws.set_price(symbol, HOLDINGS * spot.mid * (1 + Decimal(repr(premium))))
        return Quote(symbol, price, price, price)  # the quote is the price we moved it to


@dataclass
class NavDemo:
    pair: str
    quotes: int = 0


async def run(console: Console, bootstrap: str, venues: EmbeddedVenues, pool: asyncpg.Pool, run_id: str) -> Group | str:
    """Feed the premium path, wait for the pair to be flat, and summarise its trades and P&L."""
    tws = venues.tws
    binance_url = venues.env().get("BINANCE_BASE_URL") or os.environ.get("BINANCE_BASE_URL")
    if tws is None or not binance_url:
        return "NAV arbitrage: skipped (it plays its premium on the embedded TWS simulator and needs Binance)"
    demo = NavDemo(pair=f"GBTC-BTC-{run_id}")
    spec = NavPairSpec(demo.pair, "GBTC", "BTC-USDT", HOLDINGS)
    book = BinanceBook(binance_url)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    await producer.start()
    path = premium_path(int(time.time()))
    try:
        with console.status(f"NAV arbitrage: feeding {len(path)} quotes of {demo.pair} (a premium, then a "
                            "discount, both reverting)..."):
            market = PremiumMarket(tws, book, spec.spot_symbol, path)
            async for quote in nav_quotes(spec, market, book, SYSTEM_CLOCK, INTERVAL, count=len(path)):
                await producer.send_and_wait(NAV_QUOTES, key=quote.pair.encode(), value=quote.to_bytes())
                demo.quotes += 1
            flat = await _wait_flat(pool, demo.pair, demo.quotes, timeout=60.0)
    except Exception as exc:
        return f"[red]NAV arbitrage demo failed: {exc!r}[/]"
    finally:
        await producer.stop()
        await book.close()
        tws.release("GBTC")
    return await summary(pool, demo, flat)


async def _wait_flat(pool: asyncpg.Pool, pair: str, quotes: int, timeout: float) -> bool:
    """Until every quote is observed and the pair is flat with no leg working (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        observed = await pool.fetchval("SELECT count(*) FROM nav_spreads WHERE pair = $1", pair)
        row = await pool.fetchrow("SELECT episode FROM nav_pairs WHERE pair = $1", pair) if observed >= quotes \
            else None
        open_legs = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE strategy = 'nav-arb' AND group_id LIKE $1 "
            "AND state NOT IN ('FILLED', 'CANCELLED', 'REJECTED', 'EXPIRED')", f"nav-{pair}-%")
        if row is not None and row["episode"] == "FLAT" and open_legs == 0:
            return True
        await asyncio.sleep(0.25)
    return False


async def summary(pool: asyncpg.Pool, demo: NavDemo, flat: bool) -> Group:
    pair = demo.pair
    observed = await pool.fetchval("SELECT count(*) FROM nav_spreads WHERE pair = $1", pair)
    decisions = await pool.fetch(
        "SELECT ts, decision, spread, zscore, group_id FROM nav_spreads WHERE pair = $1 AND decision IS NOT NULL "
        "ORDER BY ts", pair)
    trades = Table(title=f"NAV arbitrage {pair}: decisions ({observed} of {demo.quotes} quotes observed)")
    for col in ("quote ts", "decision", "spread", "z", "group"):
        trades.add_column(col)
    for d in decisions:
        trades.add_row(d["ts"].strftime("%H:%M:%S.%f")[:-3], d["decision"], f"{float(d['spread']):+.4%}",
                       f"{float(d['zscore']):+.2f}", d["group_id"] or "-")

    legs = await pool.fetch(
        "SELECT group_id, symbol, side, quantity, broker, state, avg_fill_price, reason, created_at FROM orders "
        "WHERE strategy = 'nav-arb' AND group_id LIKE $1 ORDER BY created_at, symbol", f"nav-{pair}-%")
    leg_table = Table(title="its legs (signals -> router -> executors)")
    for col in ("group", "symbol", "side", "quantity", "broker", "state", "avg price"):
        leg_table.add_column(col)
    for leg in legs:
        leg_table.add_row(leg["group_id"][-8:], leg["symbol"], leg["side"], _num(leg["quantity"]), leg["broker"],
                          leg["state"], _num(leg["avg_fill_price"]))

    fills = await pool.fetch(
        "SELECT f.symbol, f.side, f.quantity, f.price, f.commission, f.commission_asset FROM fills f "
        "JOIN orders o USING (client_order_id) WHERE o.strategy = 'nav-arb' AND o.group_id LIKE $1", f"nav-{pair}-%")
    cash: dict[str, Decimal] = defaultdict(Decimal)
    held: dict[str, Decimal] = defaultdict(Decimal)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    for f in fills:
        sign = Decimal(1) if f["side"] == "SELL" else Decimal(-1)
        cash[f["symbol"]] += sign * f["quantity"] * f["price"]
        held[f["symbol"]] -= sign * f["quantity"]
        if f["commission"]:
            fees[f["commission_asset"] or "?"] += f["commission"]
    pnl = Table(title=f"the pair's P&L (USD, from its fills){'' if flat else ': still open'}")
    for col in ("leg", "cash flow", "position left"):
        pnl.add_column(col, justify="right")
    for symbol in sorted(cash):
        pnl.add_row(symbol, _num(cash[symbol].quantize(Decimal("0.01"))), _num(held[symbol]))
    pnl.add_row("total", _num(sum(cash.values(), Decimal(0)).quantize(Decimal("0.01"))), "")
    if fees:
        pnl.add_row("fees", ", ".join(f"{_num(v)} {k}" for k, v in sorted(fees.items())), "")

    episodes = await pool.fetch("SELECT previous, episode, reason FROM nav_episodes WHERE pair = $1 ORDER BY id",
                                pair)
    path = Table(title="episodes")
    for col in ("from", "to", "why"):
        path.add_column(col)
    for e in episodes:
        path.add_row(e["previous"], e["episode"], e["reason"][:100])
    return Group(trades, leg_table, path, pnl)


def _num(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():f}"
