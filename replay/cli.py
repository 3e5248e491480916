"""``superintel replay``: the subcommand's arguments and handler.

Light on purpose: ``streams/cli.py`` calls ``configure`` while it builds its parser, so only
argparse is imported here; Kafka, the pipeline and matplotlib load when a replay runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the replay arguments to ``parser`` (the ``replay`` subparser) and its handler."""
    parser.description = (
        "Replay the records of a topic whose Kafka timestamp lies in [FROM, TO) through the pipeline "
        "(router, executor lifecycle, fills, positions) on recorded time, every broker on paper, "
        "and write a report. Nothing reaches live topics, tables or Redis.")
    parser.add_argument("--from", dest="start", required=True, metavar="ISO8601",
                        help="range start, inclusive, with a timezone (2026-03-02T09:30:00Z)")
    parser.add_argument("--to", dest="end", required=True, metavar="ISO8601",
                        help="range end, exclusive, with a timezone")
    parser.add_argument("--topic", default="signals", help="topic to replay (default: signals)")
    parser.add_argument("--prices", type=Path, metavar="FILE",
                        help="CSV price path for paper fills: ts,symbol,price or ts,symbol,bid,ask")
    parser.add_argument("--speed", default="max", help="max (default), realtime, or a factor like 10x")
    parser.add_argument("--run-id", help="names the run (default: a digest of topic, range and price file)")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="report directory (default: .superintel/replay/<run-id>/)")
    parser.add_argument("--store", choices=["memory", "postgres"], default="memory",
                        help="memory (default), or postgres: a schema replay_<run-id> of DATABASE_URL")
    parser.add_argument("--slack", type=float, default=60.0, metavar="SECONDS",
                        help="a partition ends at its first record this far past the range end (default 60)")
    parser.add_argument("--quiet", type=float, default=1.0, metavar="SECONDS",
                        help="... or at its end offset once nothing new came for this long (default 1)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: KAFKA_BOOTSTRAP)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from replay.prices import PriceFileError
    from replay.runner import OptionError, ReplayOptions, SpeedError, parse_speed, run_replay
    from replay.source import SourceError
    from replay.window import RangeError, ReplayRange
    from streams.settings import Settings

    try:
        options = ReplayOptions(
            window=ReplayRange.parse(args.start, args.end), topic=args.topic, prices=args.prices,
            speed=parse_speed(args.speed), run_id=args.run_id, report=args.report, store=args.store,
            slack=args.slack, quiet=args.quiet)
        if options.prices is not None and not options.prices.is_file():
            raise FileNotFoundError(f"--prices {options.prices}: no such file")
        done = asyncio.run(run_replay(options, Settings(), bootstrap=args.bootstrap))
    except (RangeError, SpeedError, OptionError, PriceFileError, SourceError, FileNotFoundError) as exc:
        print(f"superintel replay: {exc}", file=sys.stderr)
        return 2
    outcome = done.outcome
    states = Counter(order.state.value for order in outcome.orders)
    listed = ", ".join(f"{state} {n}" for state, n in sorted(states.items())) or "none"
    pnl = json.loads(done.files.summary.read_text())["pnl"]
    print(f"replay {done.run_id}: {outcome.read} records in range, {outcome.valid} valid, "
          f"{len(outcome.malformed)} malformed; orders: {listed}; {len(outcome.fills)} fills; "
          f"P&L realized {pnl['realized']}, unrealized {pnl['unrealized']}, fees {pnl['fees']}")
    print(f"report: {done.files.html}")
    return 0
