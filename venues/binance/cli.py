"""``python -m venues.binance.cli`` / ``superintel venue binance``: the simulator as a process.

Every flag maps to a ``BinanceSimulator`` knob; the shared ones (server, faults, price path) come
from ``venues/common/cli.py``. The API secret comes only from ``BINANCE_API_SECRET``, never a
flag: command lines are visible in process listings.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from decimal import Decimal

from venues.binance.http import BinanceSimulator
from venues.binance.markets import DEFAULT_BALANCES
from venues.common.cli import (
    add_fault_flags,
    add_price_flags,
    add_server_flags,
    configure_logging,
    decimal_value,
    faults_from_args,
    name_decimal,
    non_negative_float,
    positive_int,
    price_path_from_args,
    run_standalone,
)

DEFAULT_PORT = 8010


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="superintel venue binance",
        description="Binance spot REST simulator (the /api/v3 subset ccxt uses), with fault injection "
        "and /_sim control endpoints. The API secret is read from BINANCE_API_SECRET.",
    )
    add_server_flags(p, default_port=DEFAULT_PORT)
    venue = p.add_argument_group("binance")
    venue.add_argument("--api-key", default=os.environ.get("BINANCE_API_KEY") or "sim-api-key",
                       help="API key clients must send (default: $BINANCE_API_KEY or sim-api-key)")
    venue.add_argument("--tick-ms", type=int, default=500, metavar="MS",
                       help="price step and matching interval, 0 for none (default %(default)s)")
    venue.add_argument("--partial-fill-steps", type=positive_int, default=1, metavar="N",
                       help="split every fill into N chunks, one per tick for resting orders (default %(default)s)")
    venue.add_argument("--weight-limit", type=positive_int, default=6000, metavar="WEIGHT",
                       help="request weight allowed per window before 429 (default %(default)s)")
    venue.add_argument("--weight-window", type=non_negative_float, default=60.0, metavar="SECONDS",
                       help="length of the weight window (default %(default)s)")
    venue.add_argument("--commission-rate", type=decimal_value, default=Decimal("0.001"), metavar="RATE",
                       help="commission per fill, in the received asset (default %(default)s)")
    venue.add_argument("--spread-bps", type=decimal_value, default=Decimal("2"), metavar="BPS",
                       help="bid/ask spread around the price path (default %(default)s)")
    venue.add_argument("--balance", type=name_decimal, action="append", default=[], metavar="ASSET=AMOUNT",
                       help="opening free balance of an asset, over the defaults "
                       f"({', '.join(f'{a}={v}' for a, v in DEFAULT_BALANCES.items())}); repeatable")
    add_price_flags(p)
    add_fault_flags(p)
    return p


def build(args: argparse.Namespace, *, api_secret: str) -> BinanceSimulator:
    """The simulator the parsed flags describe."""
    return BinanceSimulator(
        api_key=args.api_key,
        api_secret=api_secret,
        price_path=price_path_from_args(args),
        partial_fill_steps=args.partial_fill_steps,
        balances={**DEFAULT_BALANCES, **dict(args.balance)},
        commission_rate=args.commission_rate,
        spread_bps=args.spread_bps,
        weight_limit_per_minute=args.weight_limit,
        weight_window_seconds=args.weight_window,
        faults=faults_from_args(args),
        tick_interval_ms=args.tick_ms or None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; ``argv`` as on the command line (no program name)."""
    args = parser().parse_args(argv)
    configure_logging()
    sim = build(args, api_secret=os.environ.get("BINANCE_API_SECRET") or "sim-api-secret")

    def banner(url: str) -> str:
        return (f"binance simulator on {url} (api key {args.api_key!r}; secret: BINANCE_API_SECRET; "
                f"control: {url}/_sim/faults, {url}/_sim/stats)")

    return run_standalone(lambda: sim.start(args.host, args.port), sim.stop, banner=banner)


if __name__ == "__main__":
    raise SystemExit(main())
