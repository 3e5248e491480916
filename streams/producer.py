"""Publishing signals to the pipeline from outside a worker: strategies, the CLI, the demo, tests, bench.

``SignalProducer`` is the Python producer's API (issue 17)::

    async with SignalProducer("127.0.0.1:9092") as producer:
        meta = await producer.send({"signal_id": "momo-1", "symbol": "BTC-USDT", "side": "BUY",
                                    "quantity": "0.05", "order_type": "LIMIT", "limit_price": "64950.5"})
        print(meta.partition, meta.offset)
        result = await producer.send_batch(signals)       # validated one by one, sent together
        for item in result.rejected:                       # refused here, never sent
            print(item.index, item.reason)

Why validate here: the router dead-letters what it cannot parse (``signals.dlq``), after the fact and
out of the producer's sight. The producer judges the very bytes it will send with the router's own
parser (``Signal.model_validate_json``), so an invalid signal is refused at the call, with the reason
the router would have given. What the router alone decides (an asset class no rule infers, a
BRACKET's price order) still reaches it and is dead-lettered there.

Keys: the instrument's canonical symbol (schemas/symbols.py, as the router writes it on orders) when
the ExchangeMapper can tell the asset class, else the symbol as validated; so every spelling of one
instrument lands on one partition, in publication order. ``acks="all"`` by default: a send returns
once the broker has the record, with its partition and offset.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from pydantic import ValidationError

from execution.mapper import ExchangeMapper, UnknownSymbol
from schemas import Signal
from streams.topics import SIGNALS

#: what ``SignalProducer`` takes for a signal: a model, a mapping of its fields, or JSON text/bytes
SignalInput = Signal | Mapping[str, Any] | str | bytes
#: ``progress(done, total)``: items settled (published, rejected or failed) out of the batch
Progress = Callable[[int, int], None]

_MAPPER = ExchangeMapper()


class InvalidSignal(ValueError):
    """A signal the router would dead-letter for its content; refused before sending."""

    def __init__(self, reason: str, signal_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signal_id = signal_id


@dataclass(frozen=True, slots=True)
class Published:
    index: int
    signal: Signal
    metadata: RecordMetadata

    @property
    def partition(self) -> int:
        return int(self.metadata.partition)

    @property
    def offset(self) -> int:
        return int(self.metadata.offset)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Refused here (``InvalidSignal``): never sent."""

    index: int
    reason: str
    signal_id: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """Valid, but the broker did not acknowledge it: not published (sending it again is safe, the
    signal id makes a duplicate one order)."""

    index: int
    reason: str
    signal_id: str | None = None


@dataclass
class BatchResult:
    """The outcome of ``send_batch``, each list in batch order."""

    published: list[Published] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed


def describe(exc: ValidationError) -> str:
    """The reason the router's dead letter would carry (agents/dead_letters.py ``describe``, whose
    module pulls in Faust, which a producer does not need)."""
    parts = [f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
             for err in exc.errors(include_url=False)]
    return f"invalid {exc.title}: " + "; ".join(parts)


def _signal_id_of(item: object) -> str | None:
    """The signal id of an input the model refused, when one can be read from it (for reports)."""
    if isinstance(item, str | bytes):
        try:
            item = json.loads(item)
        except ValueError:
            return None
    if isinstance(item, Signal):
        return item.signal_id
    if isinstance(item, Mapping):
        found = item.get("signal_id")
        return found if isinstance(found, str) else None
    return None


def validate_signal(item: SignalInput) -> tuple[Signal, bytes]:
    """The signal and the exact bytes to publish, judged as the router will judge them.

    JSON text is parsed by the router's parser; a model or a mapping is validated, serialised and
    the bytes parsed again, so what goes out is what was checked (a Python ``datetime`` with a
    sub-minute UTC offset, for one, passes the model but not the wire format). Raises
    ``InvalidSignal`` with the router's reason."""
    try:
        if isinstance(item, str | bytes):
            signal = Signal.model_validate_json(item)
        elif isinstance(item, Signal):
            signal = item
        elif isinstance(item, Mapping):
            signal = Signal.model_validate(item)
        else:
            raise InvalidSignal(f"not a signal: {type(item).__name__}")
        wire = signal.to_bytes()
        return Signal.model_validate_json(wire), wire
    except ValidationError as exc:
        raise InvalidSignal(describe(exc), _signal_id_of(item)) from exc


def signal_key(signal: Signal) -> bytes:
    """The record key: the instrument's canonical symbol, else the symbol as validated."""
    try:
        return _MAPPER.canonical(signal.symbol, signal.asset_class).encode()
    except UnknownSymbol:
        return signal.symbol.encode()


class SignalProducer:
    """An async context manager over an aiokafka producer that publishes valid signals only.

    ``bootstrap`` is the Kafka bootstrap (``KAFKA_BOOTSTRAP``); ``config`` goes to
    ``AIOKafkaProducer`` as is (``security_protocol``, ``sasl_*``, ``request_timeout_ms``...).
    Idempotence stays off: the embedded broker refuses idempotent producers (DESIGN section 8), and
    the pipeline is idempotent on the signal id anyway."""

    def __init__(self, bootstrap: str, *, topic: str = SIGNALS, acks: int | str = "all", linger_ms: int = 5,
                 client_id: str = "superintel-signal-producer", **config: Any) -> None:
        self.topic = topic
        self._config: dict[str, Any] = {"bootstrap_servers": bootstrap, "acks": acks, "linger_ms": linger_ms,
                                        "client_id": client_id, **config}
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(**self._config)
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        """Flush what is buffered and close."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.flush()
            finally:
                await producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("SignalProducer is not started: use `async with SignalProducer(...)`")
        return self._producer

    async def send(self, item: SignalInput) -> RecordMetadata:
        """Validate one signal, publish it keyed by symbol and return its record's metadata
        (``partition``, ``offset``) once the broker acknowledged it. Raises ``InvalidSignal``
        before sending anything, or aiokafka's ``KafkaError`` if the broker did not take it."""
        signal, wire = validate_signal(item)
        delivery = await self.producer.send(self.topic, key=signal_key(signal), value=wire)
        return await delivery

    async def send_batch(self, items: Iterable[SignalInput], *, progress: Progress | None = None) -> BatchResult:
        """Validate every item, publish the valid ones together (buffered and batched by the client,
        not a round trip each) and wait for their acknowledgements.

        Nothing raises for one bad item: invalid ones are ``rejected`` with the router's reason,
        undelivered ones ``failed`` with the broker's; ``published`` carries each record's partition
        and offset. ``progress(done, total)`` is called as items settle."""
        batch = list(items)
        total = len(batch)
        result = BatchResult()
        settled = 0

        def advance() -> None:
            nonlocal settled
            settled += 1
            if progress is not None:
                progress(settled, total)

        pending: list[tuple[int, Signal, asyncio.Future[RecordMetadata]]] = []
        for index, item in enumerate(batch):
            try:
                signal, wire = validate_signal(item)
            except InvalidSignal as exc:
                result.rejected.append(Rejected(index, exc.reason, exc.signal_id))
                advance()
                continue
            try:
                delivery = await self.producer.send(self.topic, key=signal_key(signal), value=wire)
            except KafkaError as exc:
                result.failed.append(Failed(index, f"{type(exc).__name__}: {exc}", signal.signal_id))
                advance()
                continue
            delivery.add_done_callback(lambda _: advance())
            pending.append((index, signal, delivery))
        for index, signal, delivery in pending:
            try:
                result.published.append(Published(index, signal, await delivery))
            except KafkaError as exc:
                result.failed.append(Failed(index, f"{type(exc).__name__}: {exc}", signal.signal_id))
        result.failed.sort(key=lambda f: f.index)
        return result


async def publish_signals(bootstrap: str, signals: Iterable[SignalInput], topic: str = SIGNALS) -> int:
    """Publish signals keyed by symbol (so one instrument's signals stay ordered); returns the count.

    All or nothing in the sense callers relied on: raises ``InvalidSignal`` for the first invalid
    one (nothing of the batch is sent then) and ``KafkaError`` if any was not delivered."""
    batch = list(signals)
    for item in batch:
        validate_signal(item)
    async with SignalProducer(bootstrap, topic=topic, linger_ms=2) as producer:
        result = await producer.send_batch(batch)
    if result.failed:
        first = result.failed[0]
        raise KafkaError(f"{len(result.failed)} of {len(batch)} signals not delivered; first: {first.reason}")
    return len(result.published)
