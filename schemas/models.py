"""The wire contract: every message that crosses a topic, validated at the edge.

Money and quantities are ``Decimal`` (never float): a price of 0.1 must stay 0.1 through routing,
execution and the database. Models are frozen so a message cannot be mutated after validation;
state changes produce a new ``Order`` via ``Order.transition``. Field types (schemas/fields.py)
accept only what the database can store: no NUL in text, decimals within NUMERIC's range, and
timestamps with a timezone; anything else fails here and is dead-lettered alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.enums import (
    AssetClass,
    Broker,
    OrderState,
    OrderType,
    Side,
    TimeInForce,
)
from schemas.fields import (
    Identifier,
    NonNegativeDecimal,
    PositiveDecimal,
    SignedDecimal,
    StrategyName,
    Symbol,
    SymbolInput,
    Text,
    Timestamp,
)
from schemas.symbols import canonical_or_raw


def utcnow() -> datetime:
    return datetime.now(UTC)


def client_order_id_for(signal_id: str) -> str:
    """Derive the venue-facing order id from the signal id, deterministically.

    The same signal always yields the same id, so a redelivered or duplicated signal collides
    on the ``orders`` primary key instead of producing a second order, and a venue can be asked
    "do you know this order?" after a crash. 26 characters of ``[a-z0-9]``: fits Binance's
    ``newClientOrderId`` (36), IB's ``orderRef`` and an MT4 comment (31).
    """
    digest = hashlib.blake2b(signal_id.encode(), digest_size=12).hexdigest()
    return f"si{digest}"


class WireModel(BaseModel):
    """Base of every topic payload: strict about unknown fields, immutable once parsed."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    #: whether ``to_bytes`` may write the field values directly (``_plain_json``), per class
    _plain_json_ok: ClassVar[bool] = False
    #: the field names in order (``from_validated``)
    _field_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._plain_json_ok = _plain_json(cls)
        cls._field_names = tuple(cls.__pydantic_fields__)

    def to_bytes(self) -> bytes:
        """The message as JSON bytes: exactly ``model_dump_json()`` (issue 16: a property test
        checks it byte for byte on random messages of every wire model, tests/unit/test_wire_bytes.py).

        Why not simply that: it is on the hot path of every agent (each OrderRequest, order event
        and fill), and writing the field values with orjson costs about a quarter of it. The field
        values of a model are JSON-ready but for decimals, which pydantic writes as ``str(value)``
        (``default`` below); datetimes come out alike (``OPT_UTC_Z``: UTC as ``Z``, other offsets as
        ``+HH:MM``), and enums as their values. Anything else orjson refuses (a nested model, a
        lone surrogate, an integer past 64 bits) takes pydantic's own path, errors included."""
        if self._plain_json_ok:
            try:
                return orjson.dumps(self.__dict__, default=_json_default, option=orjson.OPT_UTC_Z)
            except orjson.JSONEncodeError:
                pass
        return self.model_dump_json().encode()

    @classmethod
    def from_validated(cls, values: dict[str, Any]) -> Self:
        """An instance holding ``values`` without validating them again: for values that are
        already those of validated models and that satisfy every rule of ``cls`` by construction
        (the router builds an OrderRequest from a validated Signal plus values it derived itself;
        execution/router.py says why each one is valid). Every field must be given; the instance
        takes ``values`` over (the caller must not change it afterwards).

        Why not ``model_construct``: this pydantic's calls ``inspect.signature`` each time, which
        makes it slower than validating (issue 16). The instance is what validation would have
        built: field values in field order, every field set, no extras."""
        names = cls._field_names
        if tuple(values) != names:
            if len(values) != len(names) or any(name not in values for name in names):
                missing, unknown = set(names) - set(values), set(values) - set(names)
                raise TypeError(f"{cls.__name__}.from_validated: missing {sorted(missing)}, "
                                f"unknown {sorted(unknown)}")
            values = {name: values[name] for name in names}
        instance = cls.__new__(cls)
        _set = object.__setattr__
        _set(instance, "__dict__", values)
        _set(instance, "__pydantic_fields_set__", set(names))
        _set(instance, "__pydantic_extra__", None)
        _set(instance, "__pydantic_private__", None)
        return instance


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)  # what pydantic writes for a Decimal
    raise TypeError(f"{type(value).__name__} is left to pydantic")


def _plain_json(cls: type[BaseModel]) -> bool:
    """Whether ``model_dump_json`` of ``cls`` writes its field values as they are: no computed
    fields, serializers, aliases or excluded fields, and nothing in the config that changes how
    a value is written."""
    decorators = cls.__pydantic_decorators__
    config = cls.model_config
    return not (
        cls.__pydantic_computed_fields__
        or decorators.field_serializers
        or decorators.model_serializers
        or any(f.alias or f.serialization_alias or f.exclude for f in cls.__pydantic_fields__.values())
        or config.get("serialize_by_alias")
        or any(key.startswith("ser_json") for key in config)
    )


def _with_canonical_symbol(data: Any) -> Any:
    """Raw model input with its ``symbol`` in the canonical spelling of its ``asset_class``
    (schemas/symbols.py); input without both is returned unchanged, for validation to judge."""
    if isinstance(data, dict) and "symbol" in data and data.get("asset_class") is not None:
        canonical = canonical_or_raw(data["symbol"], data["asset_class"])
        if canonical != data["symbol"]:
            return {**data, "symbol": canonical}
    return data


#: the prices each order type needs: the validator of ``OrderIntent`` enforces them, and the JSON
#: Schema says them as if/then rules (``_order_type_rules``), so a producer validating against the
#: schema learns what the router would dead-letter
REQUIRED_PRICES: Mapping[OrderType, tuple[str, ...]] = {
    OrderType.LIMIT: ("limit_price",),
    OrderType.STOP: ("stop_price",),
    OrderType.BRACKET: ("stop_price", "take_profit_price"),
}


def _order_type_rules(schema: dict[str, Any]) -> None:
    """JSON Schema of ``REQUIRED_PRICES``: for each order type, its prices present and not null."""
    schema["allOf"] = [
        {"if": {"properties": {"order_type": {"const": kind.value}}, "required": ["order_type"]},
         "then": {"required": list(prices), "properties": {name: {"not": {"type": "null"}} for name in prices}}}
        for kind, prices in REQUIRED_PRICES.items()
    ]


class OrderIntent(WireModel):
    """The trading intent shared by a Signal and the OrderRequest routed from it."""

    model_config = ConfigDict(json_schema_extra=_order_type_rules)

    signal_id: Identifier
    ts: Timestamp = Field(default_factory=utcnow)
    strategy: StrategyName = "manual"
    symbol: Symbol
    side: Side
    quantity: PositiveDecimal
    order_type: OrderType = OrderType.MARKET
    limit_price: PositiveDecimal | None = None
    stop_price: PositiveDecimal | None = None
    take_profit_price: PositiveDecimal | None = None
    asset_class: AssetClass | None = None
    reference_price: PositiveDecimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    group_id: Identifier | None = None

    @field_validator("symbol", mode="before", json_schema_input_type=SymbolInput)
    @classmethod
    def _normalise_symbol(cls, value: Any) -> Any:
        # before validation, so a blank symbol fails min_length instead of becoming ""
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _canonical_symbol(cls, data: Any) -> Any:
        # once the asset class is known (explicit on a Signal, always on an OrderRequest/Order),
        # the symbol takes its canonical spelling: one position per instrument
        return _with_canonical_symbol(data)

    @model_validator(mode="after")
    def _prices_fit_order_type(self) -> Self:
        kind = self.order_type
        needed = REQUIRED_PRICES.get(kind, ())
        if any(getattr(self, name) is None for name in needed):
            raise ValueError(f"{kind} order needs {' and '.join(needed)}")
        if kind is OrderType.BRACKET:
            assert self.stop_price is not None and self.take_profit_price is not None
            entry = self.limit_price or self.reference_price
            if entry is not None:
                low, high = (
                    (self.stop_price, self.take_profit_price)
                    if self.side is Side.BUY
                    else (self.take_profit_price, self.stop_price)
                )
                if not low < entry < high:
                    raise ValueError(
                        "BRACKET prices out of order: a BUY needs stop < entry < take_profit, "
                        "a SELL needs take_profit < entry < stop"
                    )
        return self


class Signal(OrderIntent):
    """What a strategy publishes on ``signals``; keyed by symbol."""

    @property
    def client_order_id(self) -> str:
        return client_order_id_for(self.signal_id)


class OrderRequest(OrderIntent):
    """A routed signal on ``orders.<broker>``: the asset class is resolved and the broker chosen."""

    client_order_id: Identifier
    asset_class: AssetClass
    broker: Broker
    route_reason: Text = ""
    rerouted_from: Broker | None = None
    routed_at: Timestamp = Field(default_factory=utcnow)

    @classmethod
    def from_signal(
        cls,
        signal: Signal,
        *,
        asset_class: AssetClass,
        broker: Broker,
        reason: str,
        rerouted_from: Broker | None = None,
        at: datetime | None = None,
    ) -> OrderRequest:
        """``at`` is the routing time on the pipeline's clock (execution/clock.py); the wall
        clock only when a caller outside the pipeline leaves it out. The symbol takes its
        canonical spelling for ``asset_class`` here (schemas/symbols.py), whatever the signal
        wrote, so orders, fills and positions of one instrument share one symbol."""
        data = signal.model_dump()
        data.update(
            client_order_id=signal.client_order_id,
            asset_class=asset_class,
            broker=broker,
            route_reason=reason,
            rerouted_from=rerouted_from,
            routed_at=at or utcnow(),
        )
        return cls.model_validate(data)


class Order(OrderRequest):
    """The order as the service tracks it: one row in ``orders``.

    ``broker`` is where the order was actually placed; ``rerouted_from`` names the broker the
    router chose when a fallback moved it (visible, never silent).
    """

    state: OrderState = OrderState.PENDING
    filled_quantity: NonNegativeDecimal = Decimal(0)
    avg_fill_price: PositiveDecimal | None = None
    venue_order_id: Text | None = None
    reason: Text = ""
    created_at: Timestamp = Field(default_factory=utcnow)
    updated_at: Timestamp = Field(default_factory=utcnow)

    @classmethod
    def from_request(cls, request: OrderRequest, *, at: datetime | None = None) -> Order:
        """Step 1 (create_order); ``at`` is the creation time on the pipeline's clock."""
        now = at or utcnow()
        return cls.model_validate(
            {**request.model_dump(), "reason": request.route_reason, "created_at": now, "updated_at": now})

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def transition(
        self, new_state: OrderState, reason: str = "", *, at: datetime | None = None, **changes: Any
    ) -> Order:
        """Return the order in ``new_state``; raise ``IllegalTransition`` if the machine forbids it.

        ``at`` stamps ``updated_at``: the pipeline always passes its clock's time (a replay runs
        on recorded time); the wall clock is only the fallback for callers outside it."""
        if new_state not in ALLOWED_TRANSITIONS[self.state]:
            raise IllegalTransition(self.client_order_id, self.state, new_state)
        return self.model_copy(
            update={
                **changes,
                "state": new_state,
                "reason": reason or self.reason,
                "updated_at": at or utcnow(),
            }
        )

    @property
    def bracket_parent(self) -> str | None:
        """The entry's client order id if this order is one of a bracket's exit legs."""
        head, sep, leg = self.client_order_id.rpartition("/")
        return head if sep and leg in BRACKET_EXIT_LEGS else None

    def bracket_exits(self, *, at: datetime | None = None) -> tuple[Order, Order]:
        """A BRACKET order's two exit legs as orders of their own, so their fills have rows and
        move positions: the stop-loss (``<id>/sl``, STOP at ``stop_price``) and the take-profit
        (``<id>/tp``, LIMIT at ``take_profit_price``), opposite side, same quantity, GTC, in one
        OCA group at the venue. The venue holds them from the entry's placement on: the core
        tracks them and never places them on their own."""
        if self.order_type is not OrderType.BRACKET:
            raise ValueError(f"order {self.client_order_id} is {self.order_type}, not a BRACKET")
        assert self.stop_price is not None and self.take_profit_price is not None
        now = at or utcnow()
        exit_side = Side.SELL if self.side is Side.BUY else Side.BUY
        common = {**self.model_dump(), "side": exit_side, "time_in_force": TimeInForce.GTC, "stop_price": None,
                  "take_profit_price": None, "limit_price": None, "group_id": self.client_order_id,
                  "state": OrderState.PENDING, "filled_quantity": Decimal(0), "avg_fill_price": None,
                  "venue_order_id": None, "created_at": now, "updated_at": now}
        stop = Order.model_validate({**common, "client_order_id": bracket_exit_id(self.client_order_id, "sl"),
                                     "order_type": OrderType.STOP, "stop_price": self.stop_price,
                                     "reason": f"stop-loss of bracket {self.client_order_id}"})
        profit = Order.model_validate({**common, "client_order_id": bracket_exit_id(self.client_order_id, "tp"),
                                       "order_type": OrderType.LIMIT, "limit_price": self.take_profit_price,
                                       "reason": f"take-profit of bracket {self.client_order_id}"})
        return stop, profit

    def rerouted(self, to: Broker, reason: str, *, at: datetime | None = None) -> Order:
        """The same order moved to another broker before placement (state stays PENDING)."""
        return self.model_copy(
            update={"broker": to, "rerouted_from": self.broker, "reason": reason, "updated_at": at or utcnow()}
        )


#: the exit legs of a bracket: stop-loss and take-profit (``Order.bracket_exits``)
BRACKET_EXIT_LEGS = ("sl", "tp")


def bracket_exit_id(client_order_id: str, leg: str) -> str:
    """The client order id of a bracket's exit leg: ``<entry id>/sl`` or ``<entry id>/tp``."""
    if leg not in BRACKET_EXIT_LEGS:
        raise ValueError(f"unknown bracket leg {leg!r}")
    return f"{client_order_id}/{leg}"


class IllegalTransition(ValueError):
    def __init__(self, client_order_id: str, current: OrderState, wanted: OrderState) -> None:
        super().__init__(f"order {client_order_id}: illegal transition {current} -> {wanted}")
        self.current = current
        self.wanted = wanted


ALLOWED_TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.PENDING: frozenset(
        {OrderState.SUBMITTED, OrderState.REJECTED, OrderState.CANCELLED,
         OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.EXPIRED}
    ),
    OrderState.SUBMITTED: frozenset(
        {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED,
         OrderState.REJECTED, OrderState.EXPIRED}
    ),
    OrderState.PARTIALLY_FILLED: frozenset(
        {OrderState.PARTIALLY_FILLED, OrderState.FILLED, OrderState.CANCELLED, OrderState.EXPIRED}
    ),
    OrderState.FILLED: frozenset(),
    OrderState.CANCELLED: frozenset(),
    OrderState.REJECTED: frozenset(),
    OrderState.EXPIRED: frozenset(),
}


class Fill(WireModel):
    """One execution on ``fills``, keyed by symbol.

    ``cumulative_quantity`` is the order's filled total *after* this fill: the DB writer applies
    only growth beyond what it has recorded, so duplicates and re-emitted fills are harmless.

    ``cumulative_notional`` is the order's filled notional after this fill (the sum of quantity x
    price of all its executions: the venue's cumulative quantity x its average price). With it a
    consumer prices whatever growth it applies from its own watermark, so a gap (fills it never
    saw, or a producer that restarted from an older baseline) is priced right: the order's
    average is ``cumulative_notional / cumulative_quantity``. ``quantity`` / ``price`` are the
    increment from the producer's baseline. Optional on the wire for older producers: a Fill
    without it is applied as before (its growth at ``price``); every fill this code emits has it.
    """

    exec_id: Identifier
    cumulative_quantity: PositiveDecimal
    cumulative_notional: PositiveDecimal | None = None
    client_order_id: Identifier
    venue_order_id: Text | None = None
    broker: Broker
    symbol: Symbol
    asset_class: AssetClass
    strategy: Text = "manual"
    side: Side
    quantity: PositiveDecimal
    price: PositiveDecimal
    commission: NonNegativeDecimal = Decimal(0)
    commission_asset: Text | None = None
    ts: Timestamp = Field(default_factory=utcnow)
    signal_ts: Timestamp | None = None

    @model_validator(mode="before")
    @classmethod
    def _canonical_symbol(cls, data: Any) -> Any:
        return _with_canonical_symbol(data)

    @property
    def signed_quantity(self) -> Decimal:
        return self.quantity * self.side.sign


class OrderEvent(WireModel):
    """One state transition on ``order-events``, keyed by client_order_id: the audit trail.

    ``strategy``, ``group_id``, ``filled_quantity`` and ``avg_fill_price`` come from the order
    (``OrderEvent.of``), so a strategy can follow its own orders from the topic alone: the
    NAV-arb agent (agents/nav_arb.py) re-keys its legs' events by pair and needs the filled
    quantity of a terminal leg to close or unwind exactly that. Optional on the wire: events
    written by an older producer, or audit events built without the order at hand, have none."""

    client_order_id: Identifier
    broker: Broker
    symbol: Symbol
    state: OrderState
    previous_state: OrderState | None = None
    reason: Text = ""
    ts: Timestamp = Field(default_factory=utcnow)
    strategy: StrategyName | None = None
    group_id: Identifier | None = None
    filled_quantity: NonNegativeDecimal | None = None
    avg_fill_price: PositiveDecimal | None = None

    @classmethod
    def of(cls, order: Order, previous: OrderState | None) -> OrderEvent:
        return cls(
            client_order_id=order.client_order_id,
            broker=order.broker,
            symbol=order.symbol,
            state=order.state,
            previous_state=previous,
            reason=order.reason,
            ts=order.updated_at,
            strategy=order.strategy,
            group_id=order.group_id,
            filled_quantity=order.filled_quantity,
            avg_fill_price=order.avg_fill_price,
        )


class Position(WireModel):
    broker: Broker
    symbol: Symbol
    quantity: SignedDecimal
    avg_price: NonNegativeDecimal
    realized_pnl: SignedDecimal = Decimal(0)
    updated_at: Timestamp = Field(default_factory=utcnow)


class NavQuote(WireModel):
    """Trust price against its NAV (or spot x holdings per share) on ``nav.quotes``, keyed by pair.

    ``ts`` is required: it orders a pair's quotes, and the NAV-arb legs' signal ids derive from it,
    so a default of "now" would give a redelivered quote a new time, new leg ids and a second
    trade. ``spot_price`` is the spot leg's price when the feeder knows it (it sizes the spot leg
    and is its reference price); without it the agent asks the spot venue's market data."""

    pair: Identifier
    trust_symbol: Symbol
    spot_symbol: Symbol
    trust_price: PositiveDecimal
    nav_per_share: PositiveDecimal
    ts: Timestamp
    spot_price: PositiveDecimal | None = None


class DeadLetter(WireModel):
    """A message no agent could process, kept whole with the reason, on ``signals.dlq``."""

    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    raw: str
    reason: str
    agent: str
    ts: datetime = Field(default_factory=utcnow)
