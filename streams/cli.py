"""``superintel`` command line.

``worker`` is Faust's own worker command (``app.main()``), so every Faust worker option works
(``-l info``, ``--without-web``, ``--web-port``). The other commands are small tools around it:
the embedded stack, publishing a signal, JSON Schema export, venue simulators, and the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from schemas import AssetClass, OrderType, Side, Signal, TimeInForce


def cmd_worker(extra: Sequence[str]) -> int:
    from streams.app import build_app

    app = build_app()
    args = list(extra or ["-l", "info"])
    if not any(a.startswith("--web") or a == "--without-web" for a in args):
        args.append("--without-web")  # several workers per host must not fight over port 6066
    sys.argv = ["superintel", "worker", *args]
    app.main()
    return 0


def cmd_schema(out: Path) -> int:
    from schemas.export import write_json_schemas

    for path in write_json_schemas(out):
        print(path)
    return 0


def cmd_signal_send(args: argparse.Namespace) -> int:
    from streams.producer import publish_signals
    from streams.settings import get_settings

    signal = Signal(
        signal_id=args.signal_id or f"cli-{uuid.uuid4().hex[:16]}",
        strategy=args.strategy,
        symbol=args.symbol,
        side=Side(args.side.upper()),
        quantity=Decimal(args.quantity),
        order_type=OrderType(args.order_type.upper()),
        limit_price=_dec(args.limit_price),
        stop_price=_dec(args.stop_price),
        take_profit_price=_dec(args.take_profit_price),
        reference_price=_dec(args.reference_price),
        asset_class=AssetClass(args.asset_class.upper()) if args.asset_class else None,
        time_in_force=TimeInForce(args.tif.upper()),
    )
    asyncio.run(publish_signals(get_settings().kafka_bootstrap, [signal]))
    print(json.dumps({"published": signal.signal_id, "client_order_id": signal.client_order_id,
                      "symbol": signal.symbol}))
    return 0


def cmd_stack() -> int:
    from devstack.stack_cli import run_stack

    return run_stack(print) or 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devstack.demo import run_demo

    return run_demo(signals=args.signals, rate=args.rate, malformed=args.malformed, outage=args.outage)


def cmd_venue(args: argparse.Namespace) -> int:
    if args.venue == "binance":
        from venues.binance import main as binance_main

        return binance_main(["--port", str(args.port), "--host", args.host]) or 0
    raise SystemExit(f"unknown venue {args.venue}")


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="superintel", description="SuperIntel Execution")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the Faust worker (all agents this worker's settings select)",
                   add_help=False)
    schema = sub.add_parser("schema", help="write JSON Schema files of the wire contract")
    schema.add_argument("--out", type=Path, default=Path("schema-out"))
    sig = sub.add_parser("signal", help="signal tools")
    sig_sub = sig.add_subparsers(dest="signal_command", required=True)
    send = sig_sub.add_parser("send", help="publish one signal to the signals topic")
    send.add_argument("symbol")
    send.add_argument("side", choices=["buy", "sell", "BUY", "SELL"])
    send.add_argument("quantity")
    send.add_argument("--type", dest="order_type", default="MARKET")
    send.add_argument("--limit", dest="limit_price")
    send.add_argument("--stop", dest="stop_price")
    send.add_argument("--take-profit", dest="take_profit_price")
    send.add_argument("--ref", dest="reference_price", help="reference (mid) price")
    send.add_argument("--asset-class")
    send.add_argument("--tif", default="DAY")
    send.add_argument("--strategy", default="cli")
    send.add_argument("--id", dest="signal_id")
    sub.add_parser("stack", help="start the embedded stack (Tansu, PostgreSQL, Redis) until Ctrl-C")
    demo = sub.add_parser("demo", help="stack + worker + a mixed signal stream, with a live summary")
    demo.add_argument("--signals", type=int, default=300)
    demo.add_argument("--rate", type=float, default=100.0, help="signals per second")
    demo.add_argument("--malformed", type=int, default=5)
    demo.add_argument("--outage", type=float, default=3.0,
                      help="seconds of simulated Binance outage a third of the way in (0: none)")
    venue = sub.add_parser("venue", help="run a venue simulator standalone")
    venue.add_argument("venue", choices=["binance"])
    venue.add_argument("--port", type=int, default=8010)
    venue.add_argument("--host", default="127.0.0.1")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "worker":
        return cmd_worker(argv[1:])
    args = parser().parse_args(argv)
    if args.command == "schema":
        return cmd_schema(args.out)
    if args.command == "signal":
        return cmd_signal_send(args)
    if args.command == "stack":
        return cmd_stack()
    if args.command == "demo":
        return cmd_demo(args)
    if args.command == "venue":
        return cmd_venue(args)
    raise SystemExit(2)


if __name__ == "__main__":
    raise SystemExit(main())
