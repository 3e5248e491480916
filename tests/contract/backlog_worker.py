"""The worker of tests/contract/test_backlog_refill.py: the real app (``streams.app.build_app``,
tuned transport) with a tiny agent queue, an agent taking greedy batches from ``--topic`` that
only counts, and optionally an idle agent on ``--quiet`` (its partitions stay active while the
busy ones are paused). Both of the consumer's waits (a fetch, a loop with every partition paused)
are made an hour long: if a backlog ever waited one out, the test's deadline would pass first.
Writes ``--out`` (JSON) once ``--count`` events were seen.

    python -m tests.contract.backlog_worker --topic T [--quiet Q] --count N --out FILE   (env: KAFKA_BOOTSTRAP, ...)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import faust
from faust.types import StreamT

from agents.batches import BatchLimits, batches
from streams import transport
from streams.app import build_app
from streams.settings import Settings

#: the agent's queue: pressure is high at 80 % (Faust pauses the partitions), and the queue empties
#: every 8 events: a backlog of thousands pauses and resumes its partitions hundreds of times
QUEUE = 10
POLL = 20
HOUR = 3600.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--quiet")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    transport.TunedConsumer.fetch_timeout = HOUR
    transport.TunedConsumer.resume_check_interval = HOUR
    resumes = 0
    original_drop = transport.TunedConsumer.on_buffer_drop

    def counting_drop(self: transport.TunedConsumer, tp: object) -> None:
        nonlocal resumes
        resumes += tp in self._buffered_partitions
        original_drop(self, tp)  # type: ignore[arg-type]

    transport.TunedConsumer.on_buffer_drop = counting_drop  # type: ignore[method-assign, assignment]

    settings = Settings(WORKER_ROLES=[], SUPERINTEL_EVENT_LOOP="asyncio")
    # a fetch hands over at most POLL records: the rest wait in aiokafka's buffer, where a paused
    # partition's records sit while its agent's queue is full
    app = build_app(settings, stream_buffer_maxsize=QUEUE, broker_max_poll_records=POLL)

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    limits = BatchLimits(max_events=4, window=0.002)
    seen = 0

    @app.agent(topic(args.topic), name="busy")
    async def busy(stream: StreamT[bytes]) -> None:
        nonlocal seen
        async for events in batches(stream, limits):
            seen += len(events)
            if seen >= args.count and not args.out.exists():
                consumer = app.consumer
                args.out.write_text(json.dumps({
                    "events": seen, "resumes": resumes, "fetches": getattr(consumer, "fetches", None),
                    "empty_fetches": getattr(consumer, "empty_fetches", None)}))

    if args.quiet:
        @app.agent(topic(args.quiet), name="quiet")
        async def quiet(stream: StreamT[bytes]) -> None:
            async for _ in stream:
                pass

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
