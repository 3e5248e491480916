"""A worker whose only agent does nothing: how fast the tuned Faust consumer drains a backlog.

The app is the worker's own (``streams.app.build_app``: tuned transport, fetch wait, event loop)
with no roles, plus one agent on ``--topic`` that takes greedy batches (``agents.batches``) and
does nothing with them. Any idle time while a backlog waits is the consumer's, not the agent's
(issue 16, item 1: a fetch that waited out its timeout while the records sat in partitions Faust
had paused for a full queue). Once ``--count`` events were seen it writes a JSON report to
``--out``: the drain span, the share of it the main thread (which runs the consumer's delivery and
the agent) spent idle, i.e. neither running nor waiting for a CPU (from /proc: on a shared
machine waiting for a CPU is not the consumer's idling), the longest gap between two batches, and
the consumer's fetch counters when the transport keeps them.

    python -m bench.noop_agent --topic backlog --count 40000 --out result.json   (env: KAFKA_BOOTSTRAP ...)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import faust
from faust.types import StreamT

from agents.batches import BatchLimits, batches
from bench import procstat
from streams.app import build_app
from streams.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    settings = Settings(WORKER_ROLES=[])
    app = build_app(settings)
    topic = app.topic(args.topic, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    limits = BatchLimits(settings.batch_max, settings.batch_window)
    stamps: list[tuple[float, int]] = []
    pid = os.getpid()
    first: tuple[float, float] = (0.0, 0.0)
    first_process_cpu = 0.0

    def report() -> dict[str, Any]:
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(stamps)]
        consumer = app.consumer
        span = stamps[-1][0] - stamps[0][0] if len(stamps) > 1 else 0.0
        cpu, waiting = procstat.thread_times(pid)
        busy = (cpu - first[0]) + (waiting - first[1])
        process_cpu = procstat.cpu_seconds(pid, tree=False) - first_process_cpu
        return {
            "events": sum(n for _, n in stamps),
            "batches": len(stamps),
            "span": span,
            "longest_gap": max(gaps, default=0.0),
            "idle": max(0.0, span - busy),
            # the consumer thread's Python (decoding fetched records) holds the GIL: the main
            # thread waits for it without running and without waiting for a CPU
            "other_threads_cpu": max(0.0, process_cpu - (cpu - first[0])),
            "fetches": getattr(consumer, "fetches", None),
            "empty_fetches": getattr(consumer, "empty_fetches", None),
        }

    @app.agent(topic, name="noop")
    async def noop(stream: StreamT[bytes]) -> None:
        seen = 0
        nonlocal first, first_process_cpu
        async for events in batches(stream, limits):
            if not stamps:
                first = procstat.thread_times(pid)
                first_process_cpu = procstat.cpu_seconds(pid, tree=False)
            stamps.append((time.monotonic(), len(events)))
            seen += len(events)
            if seen >= args.count and not args.out.exists():
                args.out.write_text(json.dumps(report()))

    del noop  # registered on the app by the decorator
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
