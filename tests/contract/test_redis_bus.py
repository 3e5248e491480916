"""RedisFillPublisher against the machine's real Redis: the per-order cap, fan-out channels, exact JSON.

Pub/sub channels are shared by every Redis database on the server, so each test uses its own
symbol, client order ids and exec ids and ignores anything else that shows up on the shared
``fills`` channel.
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
    symbol_channel,
    watermark_key,
)
from execution.fills import Watermark
from schemas import AssetClass, Broker, Fill, Side

END = b"__end_of_test__"


def unique_symbol() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}-USDT"


def unique_order_id() -> str:
    return f"si{uuid.uuid4().hex[:24]}"


def make_fill(symbol: str, n: int, broker: Broker = Broker.PAPER, client_order_id: str | None = None) -> Fill:
    """The n-th fill of 0.00000003 of one order (a new order per symbol unless given)."""
    return Fill(
        exec_id=f"ex-{uuid.uuid4().hex}-{n}",
        cumulative_quantity=Decimal("0.00000003") * n,
        quantity=Decimal("0.00000003"),
        client_order_id=client_order_id or f"si{symbol[1:9].lower()}0000000000000000",
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
    assert watermark_key(fill.client_order_id) == f"fill:cum:{fill.client_order_id}"


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
    # the order's first fill on the bridge, so what it passes on is the fill as it came
    fill = make_fill(symbol, 7).model_copy(update={
        "quantity": Decimal("0.00000021"), "cumulative_notional": Decimal("0.01365002592592569259259238")})
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
    assert str(received.cumulative_notional) == "0.01365002592592569259259238"


async def test_watermarks_expire(redis_client: redis.Redis) -> None:
    fill = make_fill(unique_symbol(), 1)
    await RedisFillPublisher(redis_client, watermark_ttl_seconds=120).publish_fills([fill])
    assert 0 < await redis_client.ttl(watermark_key(fill.client_order_id)) <= 120


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
    assert await redis_client.exists(*(watermark_key(f.client_order_id) for f in fills)) == len(fills)


async def test_same_exec_id_of_two_orders_is_two_fills(redis_client: redis.Redis) -> None:
    paper = make_fill(unique_symbol(), 1)
    binance = paper.model_copy(update={"broker": Broker.BINANCE, "client_order_id": unique_order_id()})
    publisher = RedisFillPublisher(redis_client)
    assert await publisher.publish_fills([paper, binance]) == 2
    assert await publisher.publish_fills([]) == 0


# ---- the cap: never more than the order's cumulative quantity (issue 12, item 8) ----------------


def gap_fills(symbol: str, cid: str) -> tuple[Fill, Fill]:
    """0.5 @ 100 emitted, then a restarted tracker's 1.0 @ 101 (the venue's total) for a 1.0 order."""
    base = make_fill(symbol, 1, broker=Broker.BINANCE, client_order_id=cid)
    first = base.model_copy(update={"exec_id": f"binance-{cid}-0.5", "cumulative_quantity": Decimal("0.5"),
                                    "cumulative_notional": Decimal("50"), "quantity": Decimal("0.5"),
                                    "price": Decimal("100")})
    restarted = base.model_copy(update={"exec_id": f"binance-{cid}-1", "cumulative_quantity": Decimal("1"),
                                        "cumulative_notional": Decimal("101"), "quantity": Decimal("1"),
                                        "price": Decimal("101")})
    return first, restarted


async def test_a_gap_publishes_the_growth_priced_from_the_watermark_never_more(redis_client: redis.Redis) -> None:
    symbol, cid = unique_symbol(), unique_order_id()
    first, restarted = gap_fills(symbol, cid)
    channel = symbol_channel(Broker.BINANCE, symbol)
    publisher = RedisFillPublisher(redis_client)
    pubsub = await subscribe(redis_client, [channel])
    try:
        assert await publisher.publish_fills([first]) == 1
        assert await publisher.publish_fills([restarted]) == 1
        assert await publisher.publish_fills([first, restarted]) == 0  # redelivered
        received = (await drain(redis_client, pubsub, [channel]))[channel]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
    assert [(f.exec_id, f.quantity, f.price, f.cumulative_quantity, f.cumulative_notional) for f in received] == [
        (first.exec_id, Decimal("0.5"), Decimal("100"), Decimal("0.5"), Decimal("50")),
        (restarted.exec_id, Decimal("0.5"), Decimal("102"), Decimal("1"), Decimal("101")),
    ]
    assert sum(f.quantity for f in received) == Decimal("1")  # not 1.5
    assert await publisher.watermark(cid) == Watermark(Decimal("1"), Decimal("101"))


async def test_a_fill_behind_the_watermark_is_not_published(redis_client: redis.Redis) -> None:
    symbol, cid = unique_symbol(), unique_order_id()
    first, restarted = gap_fills(symbol, cid)
    publisher = RedisFillPublisher(redis_client)
    assert await publisher.publish_fills([restarted]) == 1  # the total first (the earlier one was late)
    assert await publisher.publish_fills([first]) == 0
    assert await publisher.watermark(cid) == Watermark(Decimal("1"), Decimal("101"))


async def test_two_bridges_with_redeliveries_and_gaps_publish_each_order_exactly_once(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """Two (then four) bridges, each handed every fill of 30 orders in its own order, some fills
    twice, some orders as a gap (a fill covering earlier ones): on the wire, per order, the
    quantities add up to its final cumulative quantity and the notionals to its final notional."""
    symbol = unique_symbol()
    channel = symbol_channel(Broker.PAPER, symbol)
    orders: dict[str, list[Fill]] = {}
    for k in range(30):
        cid = unique_order_id()
        steps = [make_fill(symbol, n, client_order_id=cid) for n in range(1, 5)]
        steps = [f.model_copy(update={"cumulative_notional": f.cumulative_quantity * (100 + n),
                                      "price": Decimal(100 + n)}) for n, f in enumerate(steps, start=1)]
        if k % 3 == 0:  # a restarted producer: the last fill re-emits everything under a new id
            steps.append(steps[-1].model_copy(update={"exec_id": f"again-{cid}",
                                                      "quantity": steps[-1].cumulative_quantity}))
        orders[cid] = steps
    everything = [f for steps in orders.values() for f in steps]
    batches = [everything, list(reversed(everything)), everything[::2] + everything, everything[1::3] + everything]
    publishers = [RedisFillPublisher.from_url(redis_url, max_batch=7) for _ in batches]
    pubsub = await subscribe(redis_client, [channel])
    try:
        await asyncio.gather(*(p.publish_fills(b) for p, b in zip(publishers, batches, strict=True)))
        await asyncio.gather(*(p.publish_fills(everything) for p in publishers))  # redelivered to all
        received = (await drain(redis_client, pubsub, [channel]))[channel]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
        await asyncio.gather(*(p.close() for p in publishers))
    for cid, steps in orders.items():
        mine = [f for f in received if f.client_order_id == cid]
        final = max(steps, key=lambda f: f.cumulative_quantity)
        assert sum(f.quantity for f in mine) == final.cumulative_quantity, cid
        assert final.cumulative_notional is not None
        assert abs(sum(f.quantity * f.price for f in mine) - final.cumulative_notional) < Decimal("1e-15"), cid
        assert [f.cumulative_quantity for f in mine] == sorted({f.cumulative_quantity for f in mine})
        assert await publishers[0].watermark(cid) == Watermark(final.cumulative_quantity, final.cumulative_notional)
