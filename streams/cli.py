"""``superintel`` command line: the production commands, and the others found through entry points.

``worker`` is Faust's own worker command (``app.main()``), so every Faust worker option works
(``-l info``, ``--without-web``, ``--web-port``); ``--roles`` and ``--brokers`` are ours, the command-line
form of ``WORKER_ROLES`` / ``WORKER_BROKERS``. ``schema`` exports the wire contract's JSON Schema and
``signal send`` publishes one signal, or a file of them (``--file``, one JSON signal a line); ``nav feed``
publishes NavQuotes built from the venues' market data (streams/nav_feed.py). Further
commands come from the ``superintel.commands`` entry points (pyproject.toml): each is a function that
adds its subcommand to the parser and sets a ``handler``. The developer tools (``stack``, ``demo``,
``venue``) arrive that way from devstack/cli.py, so this module, like all production code, never
imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, MutableMapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from streams.producer import BatchResult

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

#: entry-point group of commands added by other packages: ``name = "module:register"``, where
#: ``register(subparsers)`` adds the subcommand ``name`` and sets its ``handler(args) -> int``
COMMANDS_GROUP = "superintel.commands"
Handler = Callable[[argparse.Namespace], int]


#: our worker options: the environment variable each one sets (a JSON list, as Settings reads it)
WORKER_OPTIONS = {"--roles": "WORKER_ROLES", "--brokers": "WORKER_BROKERS"}


class UsageError(Exception):
    """A command line we refuse, with the sentence that says why."""


def worker_selection(args: Sequence[str], environ: MutableMapping[str, str]) -> list[str]:
    """Take ``--roles router,fills`` / ``--brokers binance`` (or ``--roles=...``) out of the worker's
    arguments into ``environ`` as ``WORKER_ROLES`` / ``WORKER_BROKERS``, and return the rest for Faust.

    The same settings either way, so a flag and a variable cannot disagree: a flag wins over the
    variable it sets. An empty ``--brokers ""`` means every broker, like an unset variable."""
    from schemas import Broker
    from streams.settings import WorkerRole

    choices: dict[str, list[str]] = {"--roles": [r.value for r in WorkerRole], "--brokers": [b.value for b in Broker]}
    rest: list[str] = []
    remaining = iter(args)
    for arg in remaining:
        name, eq, value = arg.partition("=")
        if name not in WORKER_OPTIONS:
            rest.append(arg)
            continue
        if not eq:
            following = next(remaining, None)
            if following is None:
                raise UsageError(f"{name} needs a value: a comma-separated list of {', '.join(choices[name])}")
            value = following
        names = [v.strip().lower() for v in value.split(",") if v.strip()]
        unknown = [v for v in names if v not in choices[name]]
        if unknown:
            raise UsageError(f"{name}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices[name])}")
        if name == "--roles" and not names:
            raise UsageError(f"--roles needs at least one of {', '.join(choices[name])}")
        environ[WORKER_OPTIONS[name]] = json.dumps(list(dict.fromkeys(names)))
    return rest


def cmd_worker(extra: Sequence[str]) -> int:
    try:
        extra = worker_selection(extra, os.environ)
    except UsageError as exc:
        print(f"superintel worker: {exc}", file=sys.stderr)
        return 2
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
    if args.file is not None:
        if args.symbol is not None:
            print("superintel signal send: --file publishes the file's signals; leave out SYMBOL SIDE QUANTITY",
                  file=sys.stderr)
            return 2
        return cmd_signal_send_file(args.file, dry_run=args.dry_run)
    if args.symbol is None or args.side is None or args.quantity is None:
        print("superintel signal send: give SYMBOL SIDE QUANTITY, or --file FILE", file=sys.stderr)
        return 2
    from streams.producer import InvalidSignal, SignalProducer, validate_signal
    from streams.settings import get_settings

    data: dict[str, Any] = {
        "signal_id": args.signal_id or f"cli-{uuid.uuid4().hex[:16]}",
        "strategy": args.strategy,
        "symbol": args.symbol,
        "side": args.side.upper(),
        "quantity": args.quantity,  # the text as typed: an exact decimal, judged like any producer's
        "order_type": args.order_type.upper(),
        "limit_price": args.limit_price,
        "stop_price": args.stop_price,
        "take_profit_price": args.take_profit_price,
        "reference_price": args.reference_price,
        "asset_class": args.asset_class.upper() if args.asset_class else None,
        "time_in_force": args.tif.upper(),
    }
    try:
        signal, _ = validate_signal(data)
    except InvalidSignal as exc:
        print(f"superintel signal send: {exc.reason}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(json.dumps({"valid": signal.signal_id, "client_order_id": signal.client_order_id,
                          "symbol": signal.symbol}))
        return 0

    async def send() -> Any:
        async with SignalProducer(get_settings().kafka_bootstrap) as producer:
            return await producer.send(signal)

    meta = asyncio.run(send())
    print(json.dumps({"published": signal.signal_id, "client_order_id": signal.client_order_id,
                      "symbol": signal.symbol, "partition": meta.partition, "offset": meta.offset}))
    return 0


class ProgressLine:
    """A progress bar on one stderr line, for terminals and logs alike (a production install has no
    ``rich``): on a terminal it is redrawn in place at most ``1 / interval`` times a second; elsewhere
    (a log file, CI) a line is written at every tenth of the way, so a log does not fill up."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30, interval: float = 0.1) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.interval = interval
        self._tty = self.stream.isatty()
        self._drawn_at = float("-inf")
        self._tenth = -1

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        filled = round(self.width * share)
        text = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {share:4.0%}"
        if self._tty:
            now = time.monotonic()
            if done == total or now - self._drawn_at >= self.interval:
                self._drawn_at = now
                self.stream.write("\r" + text)
                self.stream.flush()
        elif int(share * 10) > self._tenth:
            self._tenth = int(share * 10)
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def read_signal_lines(source: Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line of a JSON-lines file (``-``: standard input)."""
    text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def batch_summary(source: Path, lines: list[tuple[int, str]], result: BatchResult, topic: str) -> dict[str, Any]:
    """What ``signal send --file`` prints: counts, and each line refused or undelivered with its reason."""
    partitions: dict[str, int] = {}
    for item in result.published:
        partitions[str(item.partition)] = partitions.get(str(item.partition), 0) + 1
    return {
        "file": str(source),
        "topic": topic,
        "read": len(lines),
        "published": len(result.published),
        "rejected": len(result.rejected),
        "failed": len(result.failed),
        "partitions": dict(sorted(partitions.items(), key=lambda kv: int(kv[0]))),
        "rejections": [{"line": lines[r.index][0], "signal_id": r.signal_id, "reason": r.reason}
                       for r in result.rejected],
        "failures": [{"line": lines[f.index][0], "signal_id": f.signal_id, "reason": f.reason}
                     for f in result.failed],
    }


def cmd_signal_send_file(source: Path, *, dry_run: bool = False) -> int:
    """Publish every line of a JSON-lines file as a signal: each judged as the router would (an
    invalid one is reported with the router's reason and not sent), the valid ones sent together.
    A progress line on stderr, the summary as JSON on stdout; exit status 1 if any line was
    rejected or not delivered (the valid ones are published all the same)."""
    from streams.producer import BatchResult, InvalidSignal, Rejected, SignalProducer, validate_signal
    from streams.settings import get_settings
    from streams.topics import SIGNALS

    try:
        lines = read_signal_lines(source)
    except OSError as exc:
        print(f"superintel signal send: cannot read {source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    name = "stdin" if str(source) == "-" else source.name
    progress = ProgressLine(f"{'checking' if dry_run else 'publishing'} {name}")
    valid = 0
    if dry_run:
        result = BatchResult()
        for index, (_, text) in enumerate(lines):
            try:
                validate_signal(text)
                valid += 1
            except InvalidSignal as exc:
                result.rejected.append(Rejected(index, exc.reason, exc.signal_id))
            progress(index + 1, len(lines))
    else:
        async def send() -> BatchResult:
            async with SignalProducer(get_settings().kafka_bootstrap) as producer:
                return await producer.send_batch((text for _, text in lines), progress=progress)

        result = asyncio.run(send())
    progress.close()
    summary = batch_summary(source, lines, result, SIGNALS)
    if dry_run:
        del summary["published"], summary["partitions"], summary["failed"], summary["failures"]
        summary["valid"] = valid
    print(json.dumps(summary))
    return 0 if result.ok else 1


def cmd_nav_feed(args: argparse.Namespace) -> int:
    from decimal import Decimal

    from execution.nav_feed import NavPairSpec
    from streams.nav_feed import run_nav_feed
    from streams.settings import get_settings

    spec = NavPairSpec(pair=args.pair, trust_symbol=args.trust, spot_symbol=args.spot,
                       holdings_per_share=Decimal(args.holdings))
    try:
        sent = asyncio.run(run_nav_feed(get_settings(), spec, args.interval, args.count))
    except KeyboardInterrupt:
        return 0
    print(json.dumps({"published": sent, "pair": spec.pair}), file=sys.stderr)
    return 0


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
    send = sig_sub.add_parser("send", help="publish one signal, or a JSON-lines file of them (--file), to the "
                                           "signals topic")
    send.add_argument("symbol", nargs="?")
    send.add_argument("side", nargs="?", choices=["buy", "sell", "BUY", "SELL"])
    send.add_argument("quantity", nargs="?")
    send.add_argument("--file", type=Path, help="a JSON-lines file, one signal a line ('-': standard input); "
                                                "summary as JSON on stdout, progress on stderr")
    send.add_argument("--dry-run", action="store_true", help="validate only, publish nothing")
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
    nav = sub.add_parser("nav", help="NAV-arbitrage tools")
    nav_sub = nav.add_subparsers(dest="nav_command", required=True)
    feed = nav_sub.add_parser("feed", help="publish NavQuotes built from the venues' market data to nav.quotes")
    feed.add_argument("pair", help="the pair's name, e.g. GBTC-BTC (the nav.quotes key)")
    feed.add_argument("--trust", required=True, help="the trust's symbol, priced by its venue (e.g. GBTC)")
    feed.add_argument("--spot", required=True, help="the spot symbol, priced by the spot venue (e.g. BTC-USDT)")
    feed.add_argument("--holdings", required=True, help="spot units held per trust share (NAV = holdings x spot)")
    feed.add_argument("--interval", type=float, default=1.0, help="seconds between quotes")
    feed.add_argument("--count", type=int, help="stop after this many ticks (default: until Ctrl-C)")
    feed.set_defaults(handler=cmd_nav_feed)
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
