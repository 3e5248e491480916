"""Redis pub/sub fan-out of fills (step 8): the ``FillPublisher`` port on redis.asyncio.

Kafka delivers at least once, so the same fill can reach the bridge several times (rebalance,
restart, replay), and after a tracker restart the same execution can come back as a new fill
covering a gap (0.5 emitted, then "1.0 filled" as a fill of 1.0). Subscribers of a pub/sub
channel cannot deduplicate after the fact, so the bridge does it, by the order's *cumulative*
quantity, not by message id: per client order id it keeps a watermark in Redis, the hash
``fill:cum:<client_order_id>`` with ``q`` (cumulative quantity passed on) and ``n`` (its
cumulative notional), and publishes only a fill's growth beyond it, priced from it
(``execution/fills.py``: ``advance_watermarks``, the stores' own watermark rule). What the
channels carry for one order therefore never adds up to more than the venue's cumulative
quantity, i.e. never more than the order's quantity, and adds up to its notional.

Each batch costs two round trips: one registered read script returning every watermark of the
batch as one flat reply (a pipeline of one ``HMGET`` per order cost the bridge a reply parse per
order, issue 16), then one registered Lua script that compares every watermark it advances with the value read
(compare-and-set) and, only if none moved, writes them all and publishes the fills, atomically
on the server. A bridge that lost a race (another worker advanced one of the orders in between)
publishes nothing, re-reads and recomputes, so two bridges and any redelivery publish each
growth once. Decimal arithmetic stays in Python; the script only compares the strings it was
handed back.

Every fill goes to three channels so consumers subscribe at the grain they need:
``fills`` (everything), ``fills.<broker>`` and ``fills.<broker>.<SYMBOL>``. The payload is
``Fill.model_dump_json()``: Decimals stay exact strings and ``Fill.model_validate_json`` reads it.
It is the fill as received except that ``quantity``/``price`` are the growth passed on (they
differ only when the bridge's watermark differs from the producer's baseline), and it carries
``cumulative_notional`` when the producer sent it (a field added, nothing removed).

Watermarks expire ``watermark_ttl_seconds`` (7 days by default) after an order's last growth:
an order that rests longer than that between two fills would have its next fill published whole.
The script touches one key per order, which a Redis Cluster would spread over slots; this bridge
targets a single Redis (or a primary with replicas), as in the design.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from types import TracebackType
from typing import Self

import redis.asyncio as redis

from execution.fills import Watermark, advance_watermarks
from schemas import Broker, Fill


class WatermarkContention(Exception):
    """Other bridges kept advancing the same orders through every attempt; retry the batch."""


#: failures that pass when Redis comes back (or the racing bridge is done)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    WatermarkContention,
)

#: Channel carrying every fill.
FILLS_CHANNEL = "fills"
#: Prefix of the per-order watermark hashes: ``fill:cum:<client_order_id>``.
WATERMARK_KEY_PREFIX = "fill:cum"
#: How long an order's watermark outlives its last growth. Redeliveries arrive within minutes;
#: the bound is orders resting between two fills, so it is generous.
DEFAULT_WATERMARK_TTL_SECONDS = 7 * 24 * 60 * 60
#: Fills per script call: bounds how long one script blocks the (single-threaded) server.
DEFAULT_MAX_BATCH = 500
#: Compare-and-set rounds per batch before giving up with ``WatermarkContention``. Each lost
#: round means another bridge advanced an order, so rounds are only lost while others progress.
MAX_ATTEMPTS = 16

_CHANNELS_PER_FILL = 3
_ARGS_PER_KEY = 3

# KEYS[i]: watermark hash of order i. Returns q1, n1, q2, n2 ... (nil where a field is absent).
_READ_WATERMARKS = """
local out = {}
for i = 1, #KEYS do
    local fields = redis.call('HMGET', KEYS[i], 'q', 'n')
    out[2 * i - 1] = fields[1]
    out[2 * i] = fields[2]
end
return out
"""

# KEYS[i]: watermark hash of order i. ARGV[1]: ttl in seconds; ARGV[2]: how many fills to
# publish; then per key: the ``q`` read before ('' = absent), the new ``q``, the new ``n``; then
# per fill: its payload followed by its channels. Returns -1 when a watermark moved since it was
# read (nothing written, nothing published), else how many fills were published.
_ADVANCE_AND_PUBLISH = f"""
local ttl = ARGV[1]
local count = tonumber(ARGV[2])
local per_key = {_ARGS_PER_KEY}
for i = 1, #KEYS do
    local current = redis.call('HGET', KEYS[i], 'q')
    if not current then current = '' end
    if current ~= ARGV[3 + (i - 1) * per_key] then
        return -1
    end
end
for i = 1, #KEYS do
    local base = 3 + (i - 1) * per_key
    redis.call('HSET', KEYS[i], 'q', ARGV[base + 1], 'n', ARGV[base + 2])
    redis.call('EXPIRE', KEYS[i], ttl)
end
local stride = {_CHANNELS_PER_FILL + 1}
local first = 3 + #KEYS * per_key
for f = 0, count - 1 do
    local base = first + f * stride
    for c = 1, stride - 1 do
        redis.call('PUBLISH', ARGV[base + c], ARGV[base])
    end
end
return count
"""


def broker_channel(broker: Broker) -> str:
    """``fills.<broker>``: every fill of one broker."""
    return f"{FILLS_CHANNEL}.{broker.value}"


def symbol_channel(broker: Broker, symbol: str) -> str:
    """``fills.<broker>.<SYMBOL>``: one instrument at one broker (symbol upper-cased)."""
    return f"{broker_channel(broker)}.{symbol.upper()}"


def fill_channels(fill: Fill) -> tuple[str, str, str]:
    """The three channels a fill is published on, widest first."""
    return FILLS_CHANNEL, broker_channel(fill.broker), symbol_channel(fill.broker, fill.symbol)


def watermark_key(client_order_id: str) -> str:
    """The watermark hash of one order. Client order ids are unique across brokers (derived
    from the signal id), and an order rerouted to paper keeps its id: one watermark per order."""
    return f"{WATERMARK_KEY_PREFIX}:{client_order_id}"


def _decimal(raw: bytes | str | None) -> Decimal | None:
    if raw is None:
        return None
    return Decimal(raw.decode() if isinstance(raw, bytes) else raw)


class RedisFillPublisher:
    """Publishes each order's fill growth once on its three channels, however often, by however
    many bridges, a fill is handed over."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        watermark_ttl_seconds: int = DEFAULT_WATERMARK_TTL_SECONDS,
        max_batch: int = DEFAULT_MAX_BATCH,
        owns_client: bool = False,
    ) -> None:
        if watermark_ttl_seconds <= 0 or max_batch <= 0:
            raise ValueError("watermark_ttl_seconds and max_batch must be positive")
        self._client = client
        self._ttl = watermark_ttl_seconds
        self._max_batch = max_batch
        self._owns_client = owns_client
        self._script = client.register_script(_ADVANCE_AND_PUBLISH)
        self._read_script = client.register_script(_READ_WATERMARKS)

    @classmethod
    def from_url(cls, url: str, **kwargs: int) -> RedisFillPublisher:
        """A publisher with its own connection pool, closed by ``close()``."""
        return cls(redis.Redis.from_url(url), owns_client=True, **kwargs)

    async def publish_fills(self, fills: Sequence[Fill]) -> int:
        """Publish the growth the fills bring beyond their orders' watermarks; return how many
        fills were published."""
        published = 0
        for start in range(0, len(fills), self._max_batch):
            published += await self._publish_chunk(fills[start : start + self._max_batch])
        return published

    async def watermark(self, client_order_id: str) -> Watermark | None:
        """What has been published of one order so far (``None``: nothing, or expired)."""
        raw = await self._client.hmget(watermark_key(client_order_id), ["q", "n"])
        quantity, notional = _decimal(raw[0]), _decimal(raw[1])
        if quantity is None or notional is None:
            return None
        return Watermark(quantity, notional)

    async def _publish_chunk(self, fills: Sequence[Fill]) -> int:
        if not fills:
            return 0
        ids = sorted({fill.client_order_id for fill in fills})
        for _ in range(MAX_ATTEMPTS):
            read, known = await self._read(ids)
            published, marks = advance_watermarks(fills, known)
            if not published:
                return 0  # watermarks only grow: what is behind them now stays behind
            advanced = sorted(marks)
            args: list[str | int] = [self._ttl, len(published)]
            for cid in advanced:
                args.extend((read.get(cid, ""), str(marks[cid].quantity), str(marks[cid].notional)))
            for fill in published:
                args.append(fill.model_dump_json())
                args.extend(fill_channels(fill))
            result = int(await self._script(keys=[watermark_key(cid) for cid in advanced], args=args))
            if result >= 0:
                return result
        raise WatermarkContention(f"fill watermarks of {len(ids)} orders kept moving for {MAX_ATTEMPTS} attempts")

    async def _read(self, ids: Sequence[str]) -> tuple[dict[str, str], dict[str, Watermark]]:
        """The watermarks of ``ids``, one round trip: the raw ``q`` strings (what the script
        compares with) and the parsed watermarks."""
        flat = await self._read_script(keys=[watermark_key(cid) for cid in ids])
        read: dict[str, str] = {}
        known: dict[str, Watermark] = {}
        for cid, raw_q, raw_n in zip(ids, flat[0::2], flat[1::2], strict=True):
            quantity, notional = _decimal(raw_q), _decimal(raw_n)
            if quantity is None:
                continue
            read[cid] = raw_q.decode() if isinstance(raw_q, bytes) else str(raw_q)
            if notional is not None:
                known[cid] = Watermark(quantity, notional)
        return read, known

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
