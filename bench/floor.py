"""The latency floor of the pipeline's shape: three chained raw aiokafka hops and a Redis PUBLISH.

Signal -> fill crosses three topics (signals -> orders.<broker> -> fills) and ends with a Redis
PUBLISH. This process does exactly that with nothing else: one consumer subscribed to the three
``floor-*`` topics (as a worker has one consumer for all its topics) with the worker's fetch wait,
one producer (acks=all, no linger, like the worker's), and each record passed on unchanged
(the PUBLISHes of one fetch pipelined in one round trip, as the worker's bridge does per batch):
``floor-1`` -> ``floor-2`` -> ``floor-3`` -> PUBLISH on the channel given. The bench publishes to
``floor-1`` at the pipeline's rate and measures arrival on Redis, so the pipeline's latency can be
read as a ratio to what the broker, the client library and the machine allow.

    python -m bench.floor --bootstrap HOST:PORT --redis URL --channel NAME [--fetch-wait-ms 5]

Runs until SIGTERM; prints ``floor ready`` once its consumer owns its partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

TOPICS = ("floor-1", "floor-2", "floor-3")


async def run(bootstrap: str, redis_url: str, channel: str, fetch_wait_ms: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        *TOPICS, bootstrap_servers=bootstrap, group_id=f"floor-{channel}", auto_offset_reset="latest",
        fetch_max_wait_ms=fetch_wait_ms, session_timeout_ms=8000, heartbeat_interval_ms=1500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    client = redis.from_url(redis_url)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        print("floor ready", flush=True)
        nxt = {TOPICS[0]: TOPICS[1], TOPICS[1]: TOPICS[2]}
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            published = []
            for tp, records in batch.items():
                target = nxt.get(tp.topic)
                for record in records:
                    if target is not None:
                        await producer.send(target, record.value, key=record.key)
                    else:
                        published.append(record.value)
            if published:  # one round trip per fetch, as the worker's Redis bridge does per batch
                pipe = client.pipeline(transaction=False)
                for value in published:
                    pipe.publish(channel, value)
                await pipe.execute()
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
        await producer.stop()
        await consumer.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--fetch-wait-ms", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()  # the worker's default loop
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(run(args.bootstrap, args.redis, args.channel, args.fetch_wait_ms))
    sys.exit(0)


if __name__ == "__main__":
    main()
