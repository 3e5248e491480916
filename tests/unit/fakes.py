"""Scripted and recording implementations of the ports in ``execution.ports``, for unit tests.

Every fake records what was asked of it so tests can assert on calls, not only on results.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adapters.memory import InMemoryStore
from execution.clock import ManualClock
from execution.ports import ClaimResult, Quote, VenueOrderStatus
from schemas import Broker, DeadLetter, Fill, Order, OrderEvent, OrderState

#: What a scripted call may answer: a status, an exception to raise, or a function of the order.
Answer = VenueOrderStatus | BaseException | Callable[[Order], "VenueOrderStatus | None"] | None


class FakeClock(ManualClock):
    """The pipeline's clock, moving only when told to (execution/clock.py's ManualClock)."""


class InMemoryOrderStore(InMemoryStore):
    """The package's ``InMemoryStore`` (production semantics) recording what it was asked.

    * ``events``: the events handed to ``save_transitions``, in order (the store's own audit
      trail, with first and fill events, is ``order_events``).
    * ``history``: per order, its stored state after every write that touched it.
    * ``insert_calls`` / ``save_calls``: how often each write was called.
    """

    def __init__(self, clock: ManualClock | None = None) -> None:
        super().__init__(now=clock.now) if clock is not None else super().__init__()
        self.events: list[OrderEvent] = []
        self.history: dict[str, list[OrderState]] = defaultdict(list)
        self.insert_calls = 0
        self.save_calls = 0

    def seed(self, *orders: Order) -> None:
        """Put orders in the store as if an earlier process had written them."""
        for order in orders:
            self.orders[order.client_order_id] = order
            self.history[order.client_order_id].append(order.state)

    async def insert_orders(self, orders: Sequence[Order]) -> set[str]:
        self.insert_calls += 1
        inserted = await super().insert_orders(orders)
        for cid in sorted(inserted):
            self.history[cid].append(self.orders[cid].state)
        return inserted

    async def claim_orders(self, orders: Sequence[Order], *, owner: str, lease_seconds: float) -> ClaimResult:
        self.insert_calls += 1
        result = await super().claim_orders(orders, owner=owner, lease_seconds=lease_seconds)
        for cid in sorted(result.inserted):
            self.history[cid].append(self.orders[cid].state)
        return result

    async def save_transitions(self, changes: Sequence[tuple[Order, OrderEvent]]) -> None:
        self.save_calls += 1
        self.events.extend(event for _, event in changes)
        for change in changes:  # one at a time, so history sees every step (same result in memory)
            cid = change[0].client_order_id
            before = self.orders.get(cid)
            await super().save_transitions([change])
            if before is not None and not before.state.is_terminal:
                self.history[cid].append(self.orders[cid].state)

    async def apply_fills(self, fills: Sequence[Fill]) -> list[Fill]:
        applied = await super().apply_fills(fills)
        for fill in applied:
            if fill.client_order_id in self.orders:
                self.history[fill.client_order_id].append(self.orders[fill.client_order_id].state)
        return applied


class LenientOrderStore(InMemoryOrderStore):
    """To be removed: the old fake's ``save_transitions``, which stores the whole order it is
    given (fill totals included) and creates orders it does not hold. Production does neither
    (``apply_fills`` alone writes fill totals; adapters/timescale/sql.py, SAVE_TRANSITION). Two
    tests of tests/unit/test_fill_tracker.py still assert on it; once they seed their order and
    run ``store.apply_fills(sink.emitted_fills)`` before asserting, they can use
    ``InMemoryOrderStore`` and this class goes."""

    async def claim_orders(self, orders: Sequence[Order], *, owner: str, lease_seconds: float) -> ClaimResult:
        self.insert_calls += 1
        result = await super().claim_orders(orders, owner=owner, lease_seconds=lease_seconds)
        for cid in sorted(result.inserted):
            self.history[cid].append(self.orders[cid].state)
        return result

    async def save_transitions(self, changes: Sequence[tuple[Order, OrderEvent]]) -> None:
        self.save_calls += 1
        for order, event in changes:
            self.events.append(event)
            current = self.orders.get(order.client_order_id)
            if current is not None and current.state.is_terminal:
                continue
            self.orders[order.client_order_id] = order
            self.history[order.client_order_id].append(order.state)


class RecordingEvents:
    """ExecutionEvents that keeps every fill and order event it is given, in order."""

    def __init__(self) -> None:
        self.emitted_fills: list[Fill] = []
        self.emitted_events: list[OrderEvent] = []
        self.fill_calls = 0
        self.event_calls = 0

    async def fills(self, fills: Sequence[Fill]) -> None:
        self.fill_calls += 1
        self.emitted_fills.extend(fills)

    async def order_events(self, events: Sequence[OrderEvent]) -> None:
        self.event_calls += 1
        self.emitted_events.extend(events)

    def fills_for(self, client_order_id: str) -> list[Fill]:
        return [f for f in self.emitted_fills if f.client_order_id == client_order_id]

    def states_for(self, client_order_id: str) -> list[OrderState]:
        return [e.state for e in self.emitted_events if e.client_order_id == client_order_id]


def venue_status(
    order: Order | str,
    state: OrderState,
    *,
    filled: Decimal | str | int = 0,
    avg: Decimal | str | int | None = None,
    venue_id: str | None = None,
    reason: str = "",
    commission: Decimal | str | int = 0,
) -> VenueOrderStatus:
    cid = order if isinstance(order, str) else order.client_order_id
    return VenueOrderStatus(
        client_order_id=cid,
        venue_order_id=venue_id if venue_id is not None else f"V-{cid}",
        state=state,
        filled_quantity=Decimal(filled),
        avg_fill_price=None if avg is None else Decimal(avg),
        commission=Decimal(commission),
        reason=reason,
    )


class ScriptedBroker:
    """A BrokerPort whose answers are scripted per test.

    * ``place``: answers from ``place_script`` in turn (a status, an exception instance to raise,
      or a callable of the order); when the script is empty the order is accepted (SUBMITTED).
    * ``query``: answers from the per-order script ``query_script[cid]`` in turn, then the last
      status the venue gave for that order, or ``None`` if it never saw it.
    * ``health_check``: answers from ``health_script`` in turn, then ``healthy``.
    """

    def __init__(
        self,
        name: Broker = Broker.BINANCE,
        *,
        poll_interval: float | None = 3.0,
        healthy: bool = True,
    ) -> None:
        self.name = name
        self.poll_interval = poll_interval
        self.healthy = healthy
        self.place_script: deque[Answer] = deque()
        self.query_script: dict[str, deque[Answer]] = defaultdict(deque)
        self.health_script: deque[bool | BaseException] = deque()
        self.known: dict[str, VenueOrderStatus] = {}
        self.placed: list[Order] = []
        self.queried: list[Order] = []
        self.cancelled: list[Order] = []
        self.health_checks = 0
        self.connected = False

    # scripting helpers -----------------------------------------------------------------------
    def on_place(self, *answers: Answer) -> ScriptedBroker:
        self.place_script.extend(answers)
        return self

    def on_query(self, order: Order | str, *answers: Answer) -> ScriptedBroker:
        cid = order if isinstance(order, str) else order.client_order_id
        self.query_script[cid].extend(answers)
        return self

    def on_health(self, *answers: bool | BaseException) -> ScriptedBroker:
        self.health_script.extend(answers)
        return self

    def knows(self, *statuses: VenueOrderStatus) -> ScriptedBroker:
        for status in statuses:
            self.known[status.client_order_id] = status
        return self

    @property
    def place_count(self) -> int:
        return len(self.placed)

    def placed_ids(self) -> list[str]:
        return [o.client_order_id for o in self.placed]

    # BrokerPort --------------------------------------------------------------------------------
    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def health_check(self) -> bool:
        self.health_checks += 1
        if self.health_script:
            answer = self.health_script.popleft()
            if isinstance(answer, BaseException):
                raise answer
            return answer
        return self.healthy

    async def place(self, order: Order) -> VenueOrderStatus:
        self.placed.append(order)
        answer: Answer = self.place_script.popleft() if self.place_script else None
        status = _resolve(answer, order)
        if status is None:
            status = venue_status(order, OrderState.SUBMITTED)
        self.known[order.client_order_id] = status
        return status

    async def cancel(self, order: Order) -> VenueOrderStatus:
        self.cancelled.append(order)
        status = venue_status(order, OrderState.CANCELLED, reason="cancelled on request")
        self.known[order.client_order_id] = status
        return status

    async def query(self, order: Order) -> VenueOrderStatus | None:
        self.queried.append(order)
        script = self.query_script.get(order.client_order_id)
        if script:
            status = _resolve(script.popleft(), order)
            if status is not None:
                self.known[order.client_order_id] = status
            return status
        return self.known.get(order.client_order_id)


def _resolve(answer: Answer, order: Order) -> VenueOrderStatus | None:
    if isinstance(answer, BaseException):
        raise answer
    if callable(answer):
        return answer(order)
    return answer


class FakeMarketData:
    """MarketDataPort with quotes set by the test; an exception value is raised on lookup."""

    def __init__(self, quotes: dict[str, Quote | BaseException] | None = None) -> None:
        self.quotes: dict[str, Quote | BaseException] = dict(quotes or {})
        self.asked: list[str] = []

    def set_mid(self, symbol: str, mid: Decimal | str) -> None:
        value = Decimal(mid)
        self.quotes[symbol] = Quote(symbol, bid=value, ask=value, last=value)

    async def quote(self, symbol: str) -> Quote | None:
        self.asked.append(symbol)
        value = self.quotes.get(symbol)
        if isinstance(value, BaseException):
            raise value
        return value


def make_signal(**overrides: Any) -> Any:
    """A valid Signal with sensible defaults (a paper-fillable market buy)."""
    from schemas import Signal

    data: dict[str, Any] = {
        "signal_id": "sig-1",
        "symbol": "BTC-USDT",
        "side": "BUY",
        "quantity": Decimal("1"),
        "reference_price": Decimal("100"),
    }
    data.update(overrides)
    return Signal.model_validate(data)


def make_order(
    *,
    broker: Broker = Broker.BINANCE,
    state: OrderState = OrderState.PENDING,
    **overrides: Any,
) -> Order:
    """An Order routed to ``broker`` (via the real router types), in ``state``."""
    from schemas import AssetClass, OrderRequest

    asset_class = overrides.pop("asset_class", AssetClass.CRYPTO)
    reason = overrides.pop("route_reason", f"{asset_class} -> {broker}")
    extra: dict[str, Any] = {k: overrides.pop(k) for k in ("filled_quantity", "avg_fill_price", "venue_order_id")
             if k in overrides}
    signal = make_signal(**overrides)
    request = OrderRequest.from_signal(signal, asset_class=asset_class, broker=broker, reason=reason)
    order = Order.from_request(request)
    if state is not OrderState.PENDING or extra:
        order = order.model_copy(update={"state": state, **extra})
    return order


def ids(items: Iterable[Order | Fill | OrderEvent]) -> list[str]:
    return [i.client_order_id for i in items]


@dataclass(frozen=True)
class Message:
    """What ``DeadLetters`` reads of a Faust message: where it came from."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Event:
    """What the agents' batch helpers read of a Faust event: its message, key and raw value."""

    message: Message
    key: bytes | None
    value: bytes


@dataclass
class RecordingTopic:
    """Stands in for the ``signals.dlq`` topic: keeps what was sent, as the DeadLetter it is."""

    letters: list[DeadLetter] = field(default_factory=list)

    async def send(self, *, key: bytes | None, value: bytes) -> None:
        self.letters.append(DeadLetter.model_validate_json(value))
