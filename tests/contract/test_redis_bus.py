"""RedisFillPublisher against the machine's real Redis: dedupe, fan-out channels, exact JSON.

Pub/sub channels are shared by every Redis database on the server, so each test uses its own
symbol and exec ids and ignores anything else that shows up on the shared ``fills`` channel.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from decimal import Decimal

import redis.asyncio as redis

from adapters.redis_bus import (
    FILLS_CHANNEL,
    RedisFillPublisher,
    broker_channel,
    fill_channels,
    seen_key,
    symbol_channel,
)
from schemas import AssetClass, Broker, Fill, Side

END = b"__end_of_test__"


def unique_symbol() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}-USDT"


def make_fill(symbol: str, n: int, broker: Broker = Broker.PAPER) -> Fill:
    return Fill(
        exec_id=f"ex-{uuid.uuid4().hex}-{n}",
        cumulative_quantity=Decimal("0.00000003") * n,
        quantity=Decimal("0.00000003"),
        client_order_id="si0123456789abcdef01234567",
        broker=broker,
        symbol=symbol,
        asset_class=AssetClass.CRYPTO,
        side=Side.SELL,
        price=Decimal("65000.123456789012345678"),
        commission=Decimal("0.0000000001"),
        commission_asset="USDT",
    )


async def subscribe(client: redis.Redis, channels: list[str]) -> redis.client.PubSub:
    """Subscribe and wait for every confirmation, so nothing published afterwards is missed."""
    pubsub = client.pubsub()
    await pubsub.subscribe(*channels)
    confirmed = 0
    while confirmed < len(channels):
        message = await pubsub.get_message(timeout=5.0)
        assert message is not None, "subscription not confirmed"
        confirmed += message["type"] == "subscribe"
    return pubsub


async def drain(
    client: redis.Redis, pubsub: redis.client.PubSub, channels: list[str]
) -> dict[str, list[Fill]]:
    """Everything received per channel up to an end marker sent after the publishes.

    Redis delivers in order, so once the marker arrives on a channel, every earlier publish on it
    has arrived: no sleeps, no guessing how long to wait.
    """
    for channel in channels:
        await client.publish(channel, END)
    received: dict[str, list[Fill]] = defaultdict(list)
    open_channels = set(channels)
    while open_channels:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
        assert message is not None, f"no end marker on {open_channels}"
        channel = message["channel"].decode()
        if message["data"] == END:
            open_channels.discard(channel)
        elif channel in open_channels:
            received[channel].append(Fill.model_validate_json(message["data"]))
    return received


def test_channel_names() -> None:
    fill = make_fill("btc-usdt", 1, broker=Broker.BINANCE)
    assert broker_channel(Broker.BINANCE) == "fills.binance"
    assert symbol_channel(Broker.BINANCE, "btc-usdt") == "fills.binance.BTC-USDT"
    assert fill_channels(fill) == ("fills", "fills.binance", "fills.binance.BTC-USDT")
    assert seen_key(fill) == f"fill:seen:binance:{fill.exec_id}"


async def test_each_fill_reaches_all_three_channels_once_even_when_published_twice(
    redis_client: redis.Redis,
) -> None:
    symbol = unique_symbol()
    channels = [FILLS_CHANNEL, broker_channel(Broker.PAPER), symbol_channel(Broker.PAPER, symbol)]
    fills = [make_fill(symbol, n) for n in range(1, 4)]
    extra = make_fill(symbol, 4)
    publisher = RedisFillPublisher(redis_client)
    pubsub = await subscribe(redis_client, channels)
    try:
        assert await publisher.publish_fills(fills) == 3
        assert await publisher.publish_fills(fills) == 0
        assert await publisher.publish_fills([fills[1], extra, extra]) == 1
        received = await drain(redis_client, pubsub, channels)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    ours = {f.exec_id for f in [*fills, extra]}
    expected = [*fills, extra]
    for channel in channels:
        assert [f for f in received[channel] if f.exec_id in ours] == expected, channel


async def test_json_round_trips_to_fill_with_exact_decimals(redis_client: redis.Redis) -> None:
    symbol = unique_symbol()
    channel = symbol_channel(Broker.PAPER, symbol)
    fill = make_fill(symbol, 7)
    pubsub = await subscribe(redis_client, [channel])
    try:
        await RedisFillPublisher(redis_client).publish_fills([fill])
        (received,) = (await drain(redis_client, pubsub, [channel]))[channel]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    assert received == fill
    assert isinstance(received.price, Decimal)
    assert str(received.price) == "65000.123456789012345678"
    assert str(received.cumulative_quantity) == "2.1E-7"
    assert received.cumulative_quantity == Decimal("0.00000021")
    assert str(received.commission) == "1E-10"


async def test_dedupe_keys_expire(redis_client: redis.Redis) -> None:
    fill = make_fill(unique_symbol(), 1)
    await RedisFillPublisher(redis_client, seen_ttl_seconds=120).publish_fills([fill])
    assert 0 < await redis_client.ttl(seen_key(fill)) <= 120


async def test_racing_publishers_and_chunked_batches_publish_each_fill_once(
    redis_client: redis.Redis, redis_url: str
) -> None:
    fills = [make_fill(unique_symbol(), n) for n in range(1, 12)]
    publishers = [RedisFillPublisher.from_url(redis_url, max_batch=3) for _ in range(4)]
    try:
        counts = await asyncio.gather(*(p.publish_fills(fills) for p in publishers))
    finally:
        await asyncio.gather(*(p.close() for p in publishers))
    assert sum(counts) == len(fills)
    assert await redis_client.exists(*(seen_key(f) for f in fills)) == len(fills)


async def test_same_exec_id_at_two_brokers_is_two_fills(redis_client: redis.Redis) -> None:
    paper = make_fill(unique_symbol(), 1)
    binance = paper.model_copy(update={"broker": Broker.BINANCE})
    publisher = RedisFillPublisher(redis_client)
    assert await publisher.publish_fills([paper, binance]) == 2
    assert await publisher.publish_fills([]) == 0
