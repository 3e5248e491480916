"""``superintel`` command line: the production commands, and the others found through entry points.

``worker`` is Faust's own worker command (``app.main()``), so every Faust worker option works
(``-l info``, ``--without-web``, ``--web-port``). ``schema`` exports the wire contract's JSON Schema
and ``signal send`` publishes one signal. Further commands come from the ``superintel.commands``
entry points (pyproject.toml): each is a function that adds its subcommand to the parser and sets a
``handler``. The developer tools (``stack``, ``demo``, ``venue``) arrive that way from devstack/cli.py,
so this module, like all production code, never imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from schemas import AssetClass, OrderType, Side, Signal, TimeInForce

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

#: entry-point group of commands added by other packages: ``name = "module:register"``, where
#: ``register(subparsers)`` adds the subcommand ``name`` and sets its ``handler(args) -> int``
COMMANDS_GROUP = "superintel.commands"
Handler = Callable[[argparse.Namespace], int]


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


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="superintel", description="SuperIntel Execution")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the Faust worker (all agents this worker's settings select)",
                   add_help=False)
    schema = sub.add_parser("schema", help="write JSON Schema files of the wire contract")
    schema.add_argument("--out", type=Path, default=Path("schema-out"))
    schema.set_defaults(handler=lambda args: cmd_schema(args.out))
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
    send.set_defaults(handler=cmd_signal_send)
    from replay.cli import configure as configure_replay  # argparse only; the replay loads when it runs

    configure_replay(sub.add_parser("replay", help="replay a time range of a topic through the pipeline "
                                                   "on paper and recorded time, with a report (backtest)"))
    register_plugins(sub)
    return p


def register_plugins(sub: SubParsers) -> None:
    """Let every ``superintel.commands`` entry point add its subcommand.

    A plug-in that fails to load is reported on stderr and left out: the production commands must
    keep working whatever an optional package does.
    """
    for ep in entry_points(group=COMMANDS_GROUP):
        if ep.name in sub.choices:
            print(f"superintel: command {ep.name!r} from {ep.value} is already defined; ignored",
                  file=sys.stderr)
            continue
        try:
            register = ep.load()
            register(sub)
        except Exception as exc:
            print(f"superintel: command {ep.name!r} ({ep.value}) unavailable: {exc!r}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "worker":
        return cmd_worker(argv[1:])
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
