"""The ports of the hexagon: what the core needs from the outside world, and nothing more.

Adapters (``adapters/``) implement these; the core (``execution/``) only ever sees the
protocols, so every rule here is testable without Kafka, a database or a venue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from schemas import Broker, Fill, Order, OrderEvent, OrderState, Position


class BrokerError(Exception):
    """Base of what an adapter raises; the subclass decides what the core does with it."""

    #: set by whoever knows better than the raiser which order this is about (a rerouted copy)
    order: Order | None = None

    def __init__(self, message: str, *, code: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code


class OrderRejected(BrokerError):
    """The venue refused the order (funds, filters, symbol, auth): final, the order is REJECTED.

    ``order`` is set when the refused order is not the one the caller passed (it was rerouted
    on the way), so the rejection keeps the reroute's ``rerouted_from`` and reason."""


class BrokerUnavailable(BrokerError):
    """Transport-level failure (network, 5xx, rate limit after retries): counts against the
    circuit breaker and reroutes the order to paper, because it was never accepted."""


class PlacementUnknown(BrokerUnavailable):
    """The placement may have reached the venue, but the venue could not confirm or deny it.

    Never reroute such an order: it might already be working at the venue. The core keeps it
    where it is and asks the venue again (``query`` by client order id) until it can tell."""


class PlacementDeferred(BrokerError):
    """The venue cannot take the order now and its policy forbids sending it elsewhere (IBKR's
    ``IBKR_DISCONNECTED_POLICY=hold`` while the gateway restarts). The order stays PENDING with
    the reason, and the core offers it again later; ORDER_MAX_AGE still applies then."""


@runtime_checkable
class UnavailablePolicy(Protocol):
    """Optional venue capability: what a new order does while the venue is unavailable.

    ``paper`` (the default rule of every venue: reroute with the reason), ``hold`` (keep it
    PENDING, place it when the venue is back) or ``reject``. Venues without it always use paper."""

    def when_unavailable(self, order: Order) -> str: ...


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None

    @property
    def mid(self) -> Decimal | None:
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.last


@dataclass(frozen=True, slots=True)
class VenueOrderStatus:
    """What a venue says about one order, as *cumulative* totals.

    Every venue can report cumulative filled quantity and average price (Binance ``executedQty`` /
    ``cummulativeQuoteQty``, IB ``orderStatus.filled/avgFillPrice``, MT4 lots). The fill tracker
    turns the growth of those totals into Fill messages whose ``cumulative_quantity`` is a
    watermark, so a fill re-emitted after a crash is recognised downstream, whatever its id.
    """

    client_order_id: str
    venue_order_id: str | None
    state: OrderState
    filled_quantity: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    commission: Decimal = Decimal(0)
    commission_asset: str | None = None
    reason: str = ""
    #: the venue's own cumulative notional (Binance ``cummulativeQuoteQty``) when it reports one:
    #: exact, where ``filled_quantity x avg_fill_price`` may carry the average's rounding
    filled_notional: Decimal | None = None


@dataclass(frozen=True, slots=True)
class VenueExecution:
    """One execution a venue pushes (IB ``execDetails``), with the venue's own execution id.

    It carries the order's cumulative totals after it (IB's ``cumQty``/``avgPrice``), so the
    FillTracker applies it with the same watermark as a polled status: an execution that arrives
    twice, or after a status that already covered it, adds nothing. The fee may come with it or
    later, on its own (``VenueFee``: IB sends ``commissionReport`` separately)."""

    client_order_id: str
    exec_id: str
    venue_order_id: str | None
    cumulative_quantity: Decimal
    avg_fill_price: Decimal
    commission: Decimal | None = None
    commission_asset: str | None = None
    ts: datetime | None = None

    def as_status(self) -> VenueOrderStatus:
        return VenueOrderStatus(
            client_order_id=self.client_order_id,
            venue_order_id=self.venue_order_id,
            state=OrderState.PARTIALLY_FILLED,
            filled_quantity=self.cumulative_quantity,
            avg_fill_price=self.avg_fill_price,
            commission=self.commission or Decimal(0),
            commission_asset=self.commission_asset,
        )


@dataclass(frozen=True, slots=True)
class VenueFee:
    """The fee of one pushed execution, reported after it (IB ``commissionReport``)."""

    exec_id: str
    commission: Decimal
    commission_asset: str | None = None


@dataclass(frozen=True, slots=True)
class FillFee:
    """A fee recorded against a fill already emitted: ``(broker, exec_id)`` names the fill.
    Recording it again sets the same value (idempotent)."""

    broker: Broker
    exec_id: str
    commission: Decimal
    commission_asset: str | None = None


class UpdateListener(Protocol):
    """Where a push venue delivers order progress (the FillTracker implements it). The calls
    are synchronous and cheap (they only queue), so a venue may call them from its own event
    callbacks."""

    def on_status(self, status: VenueOrderStatus) -> None: ...

    def on_execution(self, execution: VenueExecution) -> None: ...

    def on_fee(self, fee: VenueFee) -> None: ...


@runtime_checkable
class PushUpdates(Protocol):
    """Capability of venues that push order updates (IBKR ``orderStatusEvent``/``execDetailsEvent``)."""

    def subscribe(self, listener: UpdateListener) -> None: ...


@runtime_checkable
class BrokerPort(Protocol):
    """One venue. ``place`` returns the venue's first answer; later progress arrives by polling
    ``query`` (``poll_interval`` set) or, for venues that also implement ``PushUpdates``, by the
    updates they push to the FillTracker."""

    name: Broker
    #: seconds between status polls for open orders; None for push-only venues.
    poll_interval: float | None

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def health_check(self) -> bool: ...

    async def place(self, order: Order) -> VenueOrderStatus: ...

    async def cancel(self, order: Order) -> VenueOrderStatus: ...

    async def query(self, order: Order) -> VenueOrderStatus | None:
        """Status of ``order`` by client order id; ``None`` if the venue never saw it."""
        ...


@runtime_checkable
class OpenOrdersListing(Protocol):
    """Optional venue capability: one cheap call listing a symbol's open orders with their
    cumulative totals (Binance ``openOrders``: weight 6, against 4 per ``fetch_order``). The fill
    tracker uses it to query individually only the orders that changed."""

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrderStatus]: ...


class MarketDataPort(Protocol):
    async def quote(self, symbol: str) -> Quote | None: ...


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What ``OrderStore.claim_orders`` did with each client order id of a batch.

    The claim is how several executors of one topic (scale-out, rebalances, a resolver in the same
    process) agree on who may place an order: only the holder of a live claim places it. The two
    sets answer the caller's two questions at once, without a second round trip:

    * ``inserted``: rows this call created (step 2), now owned by the caller: place them.
    * ``claimed``: rows that already existed (a redelivery), are not terminal, and are now owned
      by the caller because their claim was free, expired, or already the caller's: resume them
      (ask the venue before placing anything).

    An id in neither set exists and is terminal, or is held by another live owner: leave it alone.
    """

    inserted: frozenset[str]
    claimed: frozenset[str]


class OrderStore(Protocol):
    """Durable order state. ``claim_orders`` is step 2, the idempotency gate and the ownership gate.

    Ownership: a non-terminal order row carries an ``owner`` (an executor instance) and a lease
    expiry. Only the owner places or re-places it; the owner renews the lease while it works on
    the order and releases it on a graceful stop; a terminal transition clears it. An owner that
    dies stops renewing, so its orders become claimable by a survivor's sweep (``claim_expired``)
    once the lease has run out. Lease times are the store's clock (the database's ``now()`` for
    PostgreSQL, so every process reads one clock), never the caller's.
    """

    async def insert_orders(self, orders: Sequence[Order]) -> set[str]:
        """Insert each order unless its client_order_id exists; return the ids inserted.

        The rows are unowned (free for the first ``claim_orders``/``claim_expired``)."""
        ...

    async def claim_orders(self, orders: Sequence[Order], *, owner: str, lease_seconds: float) -> ClaimResult:
        """Step 2 with ownership, atomically and in one round trip for the whole batch: insert the
        new orders owned by ``owner``, and take over the existing non-terminal ones whose claim is
        free, expired or already ``owner``'s. Each row remembers the broker it was inserted with as
        its ``executor`` (the topic it came from), which a later reroute to paper does not change.
        """
        ...

    async def renew_claims(self, *, owner: str, client_order_ids: Sequence[str], lease_seconds: float) -> set[str]:
        """Extend the lease of those ids still owned by ``owner``; return them. An id missing from
        the answer was taken over (the lease had expired) or went terminal: stop working on it."""
        ...

    async def claim_expired(
        self, executor: Broker, *, owner: str, lease_seconds: float, limit: int = 500
    ) -> list[Order]:
        """Take over up to ``limit`` non-terminal orders of ``executor`` (the topic they came from,
        so orders rerouted to paper are included) whose claim is free or expired; return them,
        oldest first. Concurrent sweepers never receive the same order."""
        ...

    async def release_claims(self, *, owner: str, client_order_ids: Sequence[str]) -> None:
        """Free the claims ``owner`` holds on these ids (graceful shutdown), so a survivor's next
        sweep takes them at once instead of after the lease."""
        ...

    async def get_orders(self, client_order_ids: Sequence[str]) -> dict[str, Order]: ...

    async def reject_orders(
        self, rejections: Sequence[tuple[str, str]], *, owner: str, at: datetime
    ) -> list[OrderEvent]:
        """Mark orders REJECTED with a reason, for messages the executor had to dead-letter after
        step 2 may have inserted their row (otherwise a later sweep would place it, however old).

        Only a row that exists, is still PENDING (never placed: a SUBMITTED one may be working at
        the venue) and whose claim is free, expired or ``owner``'s (another live executor may be
        placing it right now) is rejected; ``at`` stamps it. One audit event per order rejected,
        in the same transaction; the claim is cleared. Returns those events (for ``order-events``).
        """
        ...

    async def save_transitions(self, changes: Sequence[tuple[Order, OrderEvent]]) -> None:
        """Persist new order states with their audit events, in one batch. A transition to a
        terminal state also clears the order's claim (nothing is left to place or watch)."""
        ...

    async def open_orders(self, broker: Broker) -> list[Order]:
        """Every non-terminal order currently placed at ``broker``, whoever owns it (a read; use
        ``claim_expired`` to take orders over)."""
        ...

    async def record_fees(self, fees: Sequence[FillFee]) -> None:
        """Record fees reported after their fills were emitted; idempotent per ``(broker, exec_id)``."""
        ...


class FillStore(Protocol):
    async def apply_fills(self, fills: Sequence[Fill]) -> list[Fill]:
        """Steps 6-7: record fills, advance their orders, update positions, in one transaction.
        Idempotent on ``(broker, exec_id)``; returns the fills that were new. An order the fills
        make FILLED loses its claim, like any terminal transition."""
        ...

    async def positions(self, broker: Broker | None = None) -> list[Position]: ...


class FillPublisher(Protocol):
    """Step 8 fan-out (Redis pub/sub); deduplicates on exec id so redelivery publishes once."""

    async def publish_fills(self, fills: Sequence[Fill]) -> int: ...


class ExecutionEvents(Protocol):
    """Where the core sends what happened: fills and order events onto their topics."""

    async def fills(self, fills: Sequence[Fill]) -> None: ...

    async def order_events(self, events: Sequence[OrderEvent]) -> None: ...


class PlacementLike(Protocol):
    @property
    def order(self) -> Order: ...
    @property
    def status(self) -> VenueOrderStatus: ...
    @property
    def adapter(self) -> BrokerPort: ...


class BrokerGateway(Protocol):
    """Steps 3-4 with the fallback policy (implemented by ``execution.fallback``)."""

    @property
    def name(self) -> Broker: ...

    def adapter_for(self, broker: Broker) -> BrokerPort: ...

    async def gateway(self) -> tuple[BrokerPort, str]: ...

    async def place(self, order: Order, gateway: BrokerPort, reason: str) -> PlacementLike: ...
