"""``python -m venues.mt4.cli`` / ``superintel venue mt4``: the MT4 bridge simulator as a process.

Every flag maps to an ``Mt4Simulator`` knob; the shared ones (server, faults, price path) come
from ``venues/common/cli.py``. ``--port`` defaults to 8005, the bridge's port (the adapter's
``MT4_BASE_URL`` default). The bearer token comes only from ``MT4_API_TOKEN``, never a flag:
command lines are visible in process listings; without it the bridge asks for no token.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from decimal import Decimal

from venues.common.cli import (
    add_fault_flags,
    add_price_flags,
    add_server_flags,
    configure_logging,
    decimal_value,
    faults_from_args,
    positive_int,
    price_path_from_args,
    probability,
    run_standalone,
)
from venues.mt4.engine import (
    DEFAULT_BALANCE,
    DEFAULT_COMMISSION_PER_LOT,
    DEFAULT_LEVERAGE,
    DEFAULT_LOGIN,
    DEFAULT_PRICE_PATH,
)
from venues.mt4.http import Mt4Simulator
from venues.mt4.knobs import TradeKnobs
from venues.mt4.symbols import DEFAULT_SYMBOLS

DEFAULT_PORT = 8005


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="superintel venue mt4",
        description="MT4 REST bridge simulator (README 'MT4 bridge contract'): a hedging USD account, "
        + ", ".join(f"{s.symbol} {s.start}" for s in DEFAULT_SYMBOLS)
        + ", with MT4 error codes, fault injection and /_sim control endpoints (/_sim/faults, /_sim/stats, "
        "/_sim/mt4, /_sim/price). The bearer token, if any, is read from MT4_API_TOKEN.",
    )
    add_server_flags(p, default_port=DEFAULT_PORT)
    venue = p.add_argument_group("mt4")
    venue.add_argument("--tick-ms", type=int, default=500, metavar="MS",
                       help="price step and trigger interval, 0 for none (default %(default)s)")
    venue.add_argument("--balance", type=decimal_value, default=DEFAULT_BALANCE, metavar="USD",
                       help="opening balance (default %(default)s)")
    venue.add_argument("--leverage", type=positive_int, default=DEFAULT_LEVERAGE,
                       help="account leverage (default %(default)s)")
    venue.add_argument("--login", type=positive_int, default=DEFAULT_LOGIN, help="account number (default %(default)s)")
    venue.add_argument("--commission-per-lot", type=decimal_value, default=DEFAULT_COMMISSION_PER_LOT, metavar="USD",
                       help="commission per lot, charged when a ticket opens (default %(default)s)")
    venue.add_argument("--spread-points", type=non_negative_int, default=None, metavar="N",
                       help="spread of every symbol in points (default 10)")
    venue.add_argument("--stop-level-points", type=non_negative_int, default=None, metavar="N",
                       help="stop level of every symbol in points (default 30)")
    venue.add_argument("--first-ticket", type=positive_int, default=None, metavar="N",
                       help="first ticket number (default: random, so tickets differ between runs)")
    venue.add_argument("--requote-rate", type=probability, default=0.0, metavar="P",
                       help="share of market executions answered 138 requote")
    venue.add_argument("--off-quotes-rate", type=probability, default=0.0, metavar="P",
                       help="share of market executions answered 136 off quotes")
    venue.add_argument("--busy-rate", type=probability, default=0.0, metavar="P",
                       help="share of trading operations answered 146 trade context busy")
    add_price_flags(p)
    # FX moves about half a pip per half-second tick, not the crypto default's five
    p.set_defaults(volatility=DEFAULT_PRICE_PATH.volatility)
    add_fault_flags(p)
    return p


def build(args: argparse.Namespace, *, api_token: str | None) -> Mt4Simulator:
    """The simulator the parsed flags describe (MT4's refusals draw from ``--seed`` too)."""
    return Mt4Simulator(
        price_path=price_path_from_args(args),
        balance=args.balance,
        leverage=args.leverage,
        login=args.login,
        commission_per_lot=Decimal(args.commission_per_lot),
        spread_points=args.spread_points,
        stop_level_points=args.stop_level_points,
        first_ticket=args.first_ticket,
        knobs=TradeKnobs(requote_rate=args.requote_rate, off_quotes_rate=args.off_quotes_rate,
                         busy_rate=args.busy_rate, seed=args.seed),
        api_token=api_token,
        faults=faults_from_args(args),
        tick_interval=args.tick_ms / 1000 if args.tick_ms > 0 else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; ``argv`` as on the command line (no program name)."""
    args = parser().parse_args(argv)
    configure_logging()
    sim = build(args, api_token=os.environ.get("MT4_API_TOKEN") or None)

    def banner(url: str) -> str:
        auth = "bearer token from MT4_API_TOKEN" if sim.api_token else "no token"
        return (f"mt4 bridge simulator on {url} (login {sim.engine.login}, {auth}; control: {url}/_sim/faults, "
                f"{url}/_sim/stats, {url}/_sim/mt4, POST {url}/_sim/price)")

    return run_standalone(lambda: sim.start(args.host, args.port), sim.stop, banner=banner)


if __name__ == "__main__":
    raise SystemExit(main())
