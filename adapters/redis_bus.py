"""Redis pub/sub fan-out of fills (step 8): the ``FillPublisher`` port on redis.asyncio.

Kafka delivers at least once, so the same fill can reach the bridge several times (rebalance,
restart, replay). Subscribers of a pub/sub channel cannot deduplicate after the fact, so the
bridge does it: a registered Lua script, run once per batch, sets ``fill:seen:<broker>:<exec_id>``
with NX and a TTL and publishes the fill only when that key was new. Dedupe and publish are one
atomic step on the server, so two bridges racing on the same fill publish it once, and a batch
costs one round trip whatever its size.

Every fill goes to three channels so consumers subscribe at the grain they need:
``fills`` (everything), ``fills.<broker>`` and ``fills.<broker>.<SYMBOL>``. The payload is
``Fill.model_dump_json()``: Decimals stay exact strings and ``Fill.model_validate_json`` reads it.

The script touches one key per fill, which a Redis Cluster would spread over slots; this bridge
targets a single Redis (or a primary with replicas), as in the design.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

import redis.asyncio as redis

from schemas import Broker, Fill

#: failures that pass when Redis comes back
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
)

#: Channel carrying every fill.
FILLS_CHANNEL = "fills"
#: Prefix of the dedupe keys: ``fill:seen:<broker>:<exec_id>``.
SEEN_KEY_PREFIX = "fill:seen"
#: How long an exec id is remembered. Kafka redeliveries arrive within minutes; a day is ample
#: and keeps the key space bounded.
DEFAULT_SEEN_TTL_SECONDS = 24 * 60 * 60
#: Fills per script call: bounds how long one script blocks the (single-threaded) server.
DEFAULT_MAX_BATCH = 500

_CHANNELS_PER_FILL = 3

# KEYS[i]: dedupe key of fill i. ARGV[1]: ttl in seconds; then, per fill, its payload followed by
# its channels. Returns how many fills were published (each on all of its channels).
_DEDUPE_AND_PUBLISH = f"""
local ttl = ARGV[1]
local stride = {_CHANNELS_PER_FILL + 1}
local published = 0
for i = 1, #KEYS do
    if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
        local base = 2 + (i - 1) * stride
        local payload = ARGV[base]
        for c = 1, stride - 1 do
            redis.call('PUBLISH', ARGV[base + c], payload)
        end
        published = published + 1
    end
end
return published
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


def seen_key(fill: Fill) -> str:
    """Dedupe key of a fill: the venue's execution id is unique per broker, not globally."""
    return f"{SEEN_KEY_PREFIX}:{fill.broker.value}:{fill.exec_id}"


class RedisFillPublisher:
    """Publishes each fill once on its three channels, whatever how often it is handed over."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        seen_ttl_seconds: int = DEFAULT_SEEN_TTL_SECONDS,
        max_batch: int = DEFAULT_MAX_BATCH,
        owns_client: bool = False,
    ) -> None:
        if seen_ttl_seconds <= 0 or max_batch <= 0:
            raise ValueError("seen_ttl_seconds and max_batch must be positive")
        self._client = client
        self._ttl = seen_ttl_seconds
        self._max_batch = max_batch
        self._owns_client = owns_client
        self._script = client.register_script(_DEDUPE_AND_PUBLISH)

    @classmethod
    def from_url(cls, url: str, **kwargs: int) -> RedisFillPublisher:
        """A publisher with its own connection pool, closed by ``close()``."""
        return cls(redis.Redis.from_url(url), owns_client=True, **kwargs)

    async def publish_fills(self, fills: Sequence[Fill]) -> int:
        """Publish the fills not seen before; return how many were published."""
        published = 0
        for start in range(0, len(fills), self._max_batch):
            published += await self._publish_chunk(fills[start : start + self._max_batch])
        return published

    async def _publish_chunk(self, fills: Sequence[Fill]) -> int:
        args: list[str | int] = [self._ttl]
        for fill in fills:
            args.append(fill.model_dump_json())
            args.extend(fill_channels(fill))
        result = await self._script(keys=[seen_key(fill) for fill in fills], args=args)
        return int(result)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
