"""The command line every simulator shares: server, fault and price-path flags, and the runner.

Each venue's ``cli.py`` builds its parser from these pieces and adds its own options, so every
simulator answers the same ``--latency``, ``--fail-rate``, ``--lose-rate`` and ``--seed`` (the
fault draws; the price path has ``--price-seed``), and ``run_standalone`` runs it until SIGINT or
SIGTERM, stopping it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

from venues.common.faults import Faults
from venues.common.prices import PricePath


def probability(text: str) -> float:
    value = non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def decimal_value(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal: {text}") from None
    if not value.is_finite() or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite decimal >= 0, got {text}")
    return value


def name_decimal(text: str) -> tuple[str, Decimal]:
    """``NAME=DECIMAL`` (``BTCUSDT=60000``, ``USDT=1000000``)."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text}")
    return name, decimal_value(raw)


def add_server_flags(parser: argparse.ArgumentParser, *, default_port: int, tcp: bool = False) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    group.add_argument("--port", type=int, default=default_port, help="port, 0 for a free one (default %(default)s)")
    if tcp:
        group.add_argument("--control-port", type=int, default=None,
                           help="port of the /_sim HTTP control endpoints (default: --port + 1)")


def add_fault_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "faults", "changeable while running: GET/POST /_sim/faults, counters at GET /_sim/stats")
    group.add_argument("--latency", type=non_negative_float, default=0.0, metavar="SECONDS",
                       help="delay added to every request")
    group.add_argument("--fail-rate", type=probability, default=0.0, metavar="P",
                       help="share of requests answered 503 (TCP venues: connections refused/closed)")
    group.add_argument("--lose-rate", type=probability, default=0.0, metavar="P",
                       help="share of order placements processed whose response is then dropped")
    group.add_argument("--seed", type=int, default=0, metavar="N",
                       help="seed of the fault draws (the price path has --price-seed); default %(default)s")


def faults_from_args(args: argparse.Namespace) -> Faults:
    return Faults(latency=args.latency, fail_rate=args.fail_rate, lose_rate=args.lose_rate, seed=args.seed)


def add_price_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("price path")
    group.add_argument("--price-seed", type=int, default=7, metavar="N",
                       help="seed of the random walk (default %(default)s)")
    group.add_argument("--volatility", type=decimal_value, default=Decimal("0.0005"),
                       help="standard deviation of the relative move per tick (default %(default)s)")
    group.add_argument("--price", type=name_decimal, action="append", default=[], metavar="SYMBOL=PRICE",
                       help="opening price of a symbol (repeatable)")
    group.add_argument("--price-series", type=Path, default=None, metavar="FILE",
                       help='JSON {"SYMBOL": ["price", ...]} replayed one price per tick, then held')


def price_path_from_args(args: argparse.Namespace) -> PricePath:
    series: dict[str, list[Decimal]] | None = None
    if args.price_series is not None:
        raw = json.loads(args.price_series.read_text())
        if not isinstance(raw, dict) or not all(isinstance(v, list) and v for v in raw.values()):
            raise SystemExit(f"{args.price_series}: expected a JSON object of non-empty price lists")
        series = {str(sym): [Decimal(str(p)) for p in prices] for sym, prices in raw.items()}
    return PricePath(seed=args.price_seed, volatility=args.volatility, start=dict(args.price), series=series)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def run_standalone(
    start: Callable[[], Awaitable[str]],
    stop: Callable[[], Awaitable[None]],
    *,
    banner: Callable[[str], str],
) -> int:
    """Start a simulator, print ``banner(where)``, serve until SIGINT/SIGTERM, stop it; exit code."""

    async def serve() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        try:
            where = await start()
            print(banner(where), flush=True)
            await stopping.wait()
        finally:
            await stop()

    try:
        asyncio.run(serve())
    except OSError as exc:  # the port is taken, the host is not ours
        print(f"cannot start the simulator: {exc}", file=sys.stderr)
        return 1
    return 0
