"""``python -m venues.tws.cli`` / ``superintel venue tws``: the TWS simulator as a process.

Every flag maps to a ``TwsSimulator`` knob; the shared ones (server, faults, price path) come
from ``venues/common/cli.py``. ``--port`` defaults to 4002, IB Gateway's paper-trading port (the
adapter's ``IBKR_PORT`` default); the control endpoints listen on ``--control-port`` (default
port + 1): ``/_sim/faults``, ``/_sim/stats``, ``POST /_sim/restart {"seconds": S}``,
``GET /_sim/tws``, ``POST /_sim/price {"key", "price"}``, ``POST /_sim/notice {"code", "message"}``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from venues.common.cli import (
    add_fault_flags,
    add_price_flags,
    add_server_flags,
    configure_logging,
    decimal_value,
    faults_from_args,
    positive_int,
    price_path_from_args,
    run_standalone,
)
from venues.tws.contracts import DEFAULT_INSTRUMENTS
from venues.tws.engine import DEFAULT_ACCOUNT
from venues.tws.server import TwsSimulator

DEFAULT_PORT = 4002


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="superintel venue tws",
        description="TWS / IB Gateway simulator speaking the TWS API socket protocol (server version 176) "
        "for ib_async, with fault injection and /_sim control endpoints (restart, faults, stats). Instruments: "
        + ", ".join(f"{i.key} ({i.sec_type}, conId {i.con_id})" for i in DEFAULT_INSTRUMENTS) + ".",
    )
    add_server_flags(p, default_port=DEFAULT_PORT, tcp=True)
    venue = p.add_argument_group("tws")
    venue.add_argument("--account", action="append", default=[], metavar="ACCOUNT",
                       help=f"a managed account (repeatable; default {DEFAULT_ACCOUNT})")
    venue.add_argument("--master-client-id", type=int, default=None, metavar="ID",
                       help="TWS's 'Master API client ID': that client sees every client's orders "
                       "(default: none, as in TWS)")
    venue.add_argument("--tick-ms", type=int, default=250, metavar="MS",
                       help="price step and matching interval, 0 for none (default %(default)s)")
    venue.add_argument("--partial-fill-steps", type=positive_int, default=1, metavar="N",
                       help="split every fill into N executions (default %(default)s)")
    venue.add_argument("--spread-ticks", type=int, default=1, metavar="N",
                       help="bid and ask this many ticks either side of the price path (default %(default)s)")
    venue.add_argument("--starting-cash", type=decimal_value, default=None, metavar="USD",
                       help="cash of each account at start (default 1000000)")
    add_price_flags(p)
    add_fault_flags(p)
    return p


def build(args: argparse.Namespace) -> TwsSimulator:
    """The simulator the parsed flags describe."""
    if args.spread_ticks < 0:
        raise SystemExit("--spread-ticks must be >= 0")
    knobs = {} if args.starting_cash is None else {"starting_cash": args.starting_cash}
    return TwsSimulator(
        accounts=tuple(args.account) or (DEFAULT_ACCOUNT,),
        master_client_id=args.master_client_id,
        price_path=price_path_from_args(args),
        partial_fill_steps=args.partial_fill_steps,
        spread_ticks=args.spread_ticks,
        faults=faults_from_args(args),
        tick_interval=args.tick_ms / 1000 if args.tick_ms > 0 else None,
        **knobs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; ``argv`` as on the command line (no program name)."""
    args = parser().parse_args(argv)
    configure_logging()
    sim = build(args)

    async def start() -> str:
        port = await sim.start(args.host, args.port, args.control_port)
        return f"{args.host}:{port}"

    def banner(where: str) -> str:
        master = "none" if sim.master_client_id is None else sim.master_client_id
        return (f"tws simulator on {where} (server version 176, accounts {','.join(sim.engine.accounts)}, "
                f"master client id {master}; control: {sim.control_url}/_sim/faults, /_sim/stats, "
                f"POST /_sim/restart)")

    return run_standalone(start, sim.stop, banner=banner)


if __name__ == "__main__":
    raise SystemExit(main())
