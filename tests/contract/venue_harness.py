"""What the venue contract suite (``tests/contract/test_venue_contract.py``) needs from a venue.

One ``VenueHarness`` per venue: it starts the venue's simulator, builds the venue's adapter
through the venue's plug-in from the registry (``adapters/registry.py``), and drives the
simulator in venue-neutral terms: move the price so a resting limit fills (in one go or in
steps), inject the faults the core must survive (a lost placement response, an outage, 503s, a
rate limit), restart the adapter as a new process would, and read the venue's own view of an
order (how many orders it holds under one client order id: more than one means "sent twice").

Faults go through the shared fault model every simulator is built on (``venues/common/faults.py``,
one-shot counters limited by ``match`` plus seeded rates), so a subclass only names its placement
request. Adding a venue to the suite = one subclass here + one entry in ``HARNESSES``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from itertools import count
from typing import Any, ClassVar, Literal

import pytest
from pydantic import SecretStr

from adapters.registry import default_registry
from adapters.venue import VenueSettings
from execution.clock import SYSTEM_CLOCK
from execution.ports import BrokerPort
from execution.retry import Backoff
from schemas import AssetClass, Broker, Order, OrderState, OrderType, Side, TimeInForce, client_order_id_for
from tests.fixtures.binance import SIM_API_KEY, SIM_API_SECRET, STILL, binance_test_config
from venues.binance import BinanceSimulator
from venues.common.control import Controlled

#: the refusals every venue must report as ``OrderRejected`` carrying its own code and message
RejectionKind = Literal["insufficient_balance", "invalid_quantity", "unknown_symbol"]
REJECTION_KINDS: tuple[RejectionKind, ...] = ("insufficient_balance", "invalid_quantity", "unknown_symbol")

_signals = count(1)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An order the venue refuses, and how: ``code`` is the venue's own error code, ``message`` a
    regular expression the error's text must match (the venue's words, not ours)."""

    order: Order
    code: int | str
    message: str


@dataclass(frozen=True, slots=True)
class VenueView:
    """The simulator's own record of the orders under one client order id, read in-process and
    translated by the harness's own table (not the adapter's parsing, which is under test)."""

    client_order_id: str
    #: orders the venue holds under this client order id: 1 is right, 2 means placed twice
    placements: int
    #: the latest of them
    state: OrderState
    raw_status: str
    filled_quantity: Decimal


class VenueHarness(ABC):
    """One venue's simulator and adapter, driven in the suite's vocabulary. Fresh per test."""

    #: test id
    name: ClassVar[str]
    broker: ClassVar[Broker]
    asset_class: ClassVar[AssetClass]
    #: a symbol the venue trades, in the wire contract's spelling
    symbol: ClassVar[str]
    #: a quantity every scenario can afford many times over, and a multiple of the lot step
    base_quantity: ClassVar[Decimal]
    #: the symbol's price increment
    tick: ClassVar[Decimal]
    #: ``Faults.match`` prefix of the venue's order-placement request (``"POST /api/v3/order"``)
    placement_key: ClassVar[str]
    #: placements sent at once by the rate-limit test: well beyond ``tighten_rate_limit``'s budget
    burst: ClassVar[int] = 24

    def __init__(self) -> None:
        self._adapters: list[BrokerPort] = []

    # -- the simulator -------------------------------------------------------------------------

    @property
    @abstractmethod
    def sim(self) -> Controlled:
        """The running simulator's fault settings and stats (``venues/common/``)."""

    @abstractmethod
    async def start_simulator(self) -> None: ...

    @abstractmethod
    async def stop_simulator(self) -> None: ...

    async def start(self) -> None:
        await self.start_simulator()

    async def stop(self) -> None:
        """Close every adapter still open, then the simulator."""
        for adapter in self._adapters:
            with contextlib.suppress(Exception):
                await adapter.close()
        self._adapters.clear()
        await self.stop_simulator()

    # -- the adapter ---------------------------------------------------------------------------

    @abstractmethod
    def settings(self) -> VenueSettings:
        """The venue's settings (its ``VenueSettings`` subclass) pointing at the simulator."""

    def build_adapter(self) -> BrokerPort:
        """The venue's ``BrokerPort``, built the production way: its registered plug-in."""
        plugin = default_registry().get(self.broker)
        assert plugin is not None, f"{self.broker} has no plug-in in adapters/registry.py"
        return plugin.build(self.settings(), SYSTEM_CLOCK).broker

    async def connect(self) -> BrokerPort:
        adapter = self.build_adapter()
        self._adapters.append(adapter)
        await adapter.connect()
        return adapter

    async def restart(self, adapter: BrokerPort) -> BrokerPort:
        """The process dies (its adapter is closed, its memory gone) and a new one starts."""
        await adapter.close()
        self._adapters.remove(adapter)
        return await self.connect()

    # -- orders --------------------------------------------------------------------------------

    def order(
        self,
        *,
        side: Side = Side.BUY,
        order_type: OrderType = OrderType.MARKET,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        symbol: str | None = None,
    ) -> Order:
        """A fresh order (new signal, so a new client order id) as the executor would hand it over."""
        signal_id = f"sig-contract-{self.name}-{next(_signals)}"
        return Order(
            signal_id=signal_id,
            client_order_id=client_order_id_for(signal_id),
            symbol=symbol or self.symbol,
            side=side,
            quantity=quantity if quantity is not None else self.base_quantity,
            order_type=order_type,
            limit_price=price,
            time_in_force=TimeInForce.GTC,
            asset_class=self.asset_class,
            broker=self.broker,
        )

    def resting_limit(self, side: Side, *, quantity: Decimal | None = None) -> Order:
        """A limit order 2% on the passive side of the market: it rests until the price comes."""
        away = Decimal("0.98") if side is Side.BUY else Decimal("1.02")
        return self.order(
            side=side, order_type=OrderType.LIMIT, quantity=quantity, price=self._on_tick(self.price() * away)
        )

    # -- prices --------------------------------------------------------------------------------

    @abstractmethod
    def price(self) -> Decimal:
        """The symbol's current (last) price at the venue."""

    @abstractmethod
    def set_price(self, price: Decimal) -> None:
        """Move the symbol's market to ``price`` and let the venue match resting orders."""

    @abstractmethod
    def advance(self) -> None:
        """One step of venue time: a crossed order with partial fills takes its next chunk."""

    @abstractmethod
    def set_partial_fill_steps(self, steps: int) -> None:
        """From now on every fill comes in ``steps`` chunks, one per ``advance`` while crossed."""

    def cross(self, order: Order) -> None:
        """Move the market 1% through ``order``'s limit, so the venue fills it (or its first chunk)."""
        assert order.limit_price is not None
        through = Decimal("0.99") if order.side is Side.BUY else Decimal("1.01")
        self.set_price(self._on_tick(order.limit_price * through))

    def _on_tick(self, price: Decimal) -> Decimal:
        return (price / self.tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * self.tick

    # -- faults (the shared fault model) -------------------------------------------------------

    def lose_next_placement_response(self) -> None:
        """The next placement is processed by the venue but its answer never arrives."""
        self.sim.faults.update({"lose_response_next": 1, "match": self.placement_key})

    def fail_next_placements(self, n: int) -> None:
        """The next ``n`` placements are refused unprocessed (HTTP 503; TCP: connection refused)."""
        self.sim.faults.update({"fail_next": n, "match": self.placement_key})

    def unreachable(self, down: bool = True) -> None:
        """Every venue request fails unprocessed (one-shot counters still come first) until lifted."""
        self.sim.faults.update({"fail_rate": 1.0 if down else 0.0})

    @abstractmethod
    def tighten_rate_limit(self) -> None:
        """Shrink the venue's request budget well below ``burst`` placements (weight, pacing)."""

    @property
    def throttled(self) -> int:
        """Requests the venue refused for its rate limit so far."""
        return self.sim.stats.throttled

    # -- the venue's side ----------------------------------------------------------------------

    @abstractmethod
    def venue_view(self, client_order_id: str) -> VenueView | None:
        """What the venue itself holds under ``client_order_id``; None if it holds nothing."""

    @abstractmethod
    def rejection(self, kind: RejectionKind) -> Rejection:
        """An order the venue refuses for ``kind``, preparing the simulator if needed."""


# -- Binance ------------------------------------------------------------------------------------

#: Binance order status -> our state, written here from Binance's API docs, independently of
#: ``adapters/binance/parsing.py`` (whose mapping the suite is checking)
_BINANCE_STATES: dict[str, OrderState] = {
    "NEW": OrderState.SUBMITTED,
    "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
    "PENDING_CANCEL": OrderState.PARTIALLY_FILLED,
    "FILLED": OrderState.FILLED,
    "CANCELED": OrderState.CANCELLED,
    "REJECTED": OrderState.REJECTED,
    "EXPIRED": OrderState.EXPIRED,
    "EXPIRED_IN_MATCH": OrderState.EXPIRED,
}


class BinanceHarness(VenueHarness):
    """``venues/binance/`` (``BinanceSimulator`` over real HTTP) and ccxt's ``BinanceAdapter``."""

    name = "binance"
    broker = Broker.BINANCE
    asset_class = AssetClass.CRYPTO
    symbol = "BTC-USDT"
    base_quantity = Decimal("0.01")
    tick = Decimal("0.01")
    placement_key = "POST /api/v3/order"
    _venue_symbol = "BTCUSDT"

    def __init__(self) -> None:
        super().__init__()
        # the same simulator ``tests/fixtures/binance.py`` starts: still prices, 1 s weight window
        self._sim = BinanceSimulator(
            api_key=SIM_API_KEY, api_secret=SIM_API_SECRET, price_path=STILL, weight_window_seconds=1.0
        )

    @property
    def sim(self) -> Controlled:
        return self._sim

    async def start_simulator(self) -> None:
        await self._sim.start()

    async def stop_simulator(self) -> None:
        await self._sim.stop()

    def settings(self) -> VenueSettings:
        # Six attempts: a burst throttled for two 1 s weight windows still gets through.
        return binance_test_config(self._sim.base_url, backoff=Backoff(attempts=6, base=0.01, factor=2.0, cap=0.05))

    def price(self) -> Decimal:
        return self._sim.engine.price(self._venue_symbol)

    def set_price(self, price: Decimal) -> None:
        self._sim.set_price(self._venue_symbol, price)

    def advance(self) -> None:
        self._sim.tick()

    def set_partial_fill_steps(self, steps: int) -> None:
        self._sim.engine.partial_fill_steps = steps

    def tighten_rate_limit(self) -> None:
        # Market orders weigh 1 each (their FULL answer carries the fills: no trade lookups), so
        # 12 per 1 s window throttles a burst of 24 whatever the window already holds.
        self._sim.weight_limit_per_minute = 12

    def venue_view(self, client_order_id: str) -> VenueView | None:
        rows = self._sim.engine.orders_for(client_order_id)
        if not rows:
            return None
        latest = rows[-1]
        return VenueView(
            client_order_id=client_order_id,
            placements=len(rows),
            state=_BINANCE_STATES[latest["status"]],
            raw_status=latest["status"],
            filled_quantity=Decimal(latest["executedQty"]),
        )

    def rejection(self, kind: RejectionKind) -> Rejection:
        if kind == "insufficient_balance":
            # 100 BTC at 60 000 is 6 M USDT; the account holds 1 M
            return Rejection(self.order(quantity=Decimal(100)), -2010, r"Account has insufficient balance")
        if kind == "invalid_quantity":
            # 0.00001 BTC at 50 000 = 0.5 USDT, under the 5 USDT minimum notional
            order = self.order(order_type=OrderType.LIMIT, quantity=Decimal("0.00001"), price=Decimal(50000))
            return Rejection(order, -1013, r"Filter failure: NOTIONAL")
        # Delisted at the venue after the adapter loaded its markets: only the venue can say no.
        self._sim.engine.symbols.pop("SOLUSDT")
        return Rejection(self.order(symbol="SOL-USDT", quantity=Decimal(1)), -1121, r"Invalid symbol")


# -- Interactive Brokers ------------------------------------------------------------------------

#: IB order status -> our state, from IB's API docs, independently of ``adapters/ibkr/parsing.py``
_IB_STATES: dict[str, OrderState] = {
    "held": OrderState.PENDING,
    "PreSubmitted": OrderState.SUBMITTED,
    "Submitted": OrderState.SUBMITTED,
    "Filled": OrderState.FILLED,
    "Cancelled": OrderState.CANCELLED,
    "Inactive": OrderState.REJECTED,
}


class IbkrHarness(VenueHarness):
    """``venues/tws/`` (``TwsSimulator``, the TWS API over TCP) and the ib_async ``IbkrAdapter``."""

    name = "ibkr"
    broker = Broker.IBKR
    asset_class = AssetClass.EQUITY
    symbol = "SPY"
    base_quantity = Decimal("10")
    tick = Decimal("0.01")
    placement_key = "placeOrder"
    _key = "SPY"

    def __init__(self) -> None:
        super().__init__()
        from venues.tws import TwsSimulator

        self._sim = TwsSimulator(price_path=STILL, tick_interval=None, farm_notices=True)

    @property
    def sim(self) -> Controlled:
        return self._sim

    async def start_simulator(self) -> None:
        await self._sim.start()

    async def stop_simulator(self) -> None:
        await self._sim.stop()

    def settings(self) -> VenueSettings:
        from adapters.ibkr.config import IbkrConfig

        return IbkrConfig(enabled=True, port=self._sim.port, client_id=1, connect_timeout=3.0,
                          request_timeout=1.5, ack_timeout=1.5,
                          reconnect_backoff=Backoff(attempts=1_000_000, base=0.05, factor=2.0, cap=0.3))

    def price(self) -> Decimal:
        return self._sim.engine.last(self._sim.engine.instruments[self._key])

    def set_price(self, price: Decimal) -> None:
        self._sim.set_price(self._key, price)

    def advance(self) -> None:
        self._sim.engine.tick()

    def set_partial_fill_steps(self, steps: int) -> None:
        self._sim.engine.partial_fill_steps = steps

    def unreachable(self, down: bool = True) -> None:
        """TCP: refuse new connections, and cut the live one (a gateway that went away). A
        one-shot lost placement still comes first, as over HTTP: the cut follows it."""
        super().unreachable(down)
        if not down:
            return
        if self._sim.faults.lose_response_next <= 0:
            self._sim.drop_connections()
            return

        def cut_after_the_lost_placement(event: object) -> None:
            # the engine's first event about the lost placement: nothing after it gets out
            if self._sim.faults.lose_response_next <= 0 and not cut:
                cut.append(self._sim.drop_connections())

        cut: list[int] = []
        self._sim.engine.subscribe(cut_after_the_lost_placement, first=True)

    def tighten_rate_limit(self) -> None:
        self._sim.max_messages_per_second = 8  # IB's pacing is 50 messages/s; a burst of 24 exceeds 8

    def venue_view(self, client_order_id: str) -> VenueView | None:
        orders = self._sim.engine.orders_by_ref(client_order_id)
        if not orders:
            return None
        latest = orders[-1]
        state = _IB_STATES[latest.status]
        if state is OrderState.SUBMITTED and latest.filled > 0:
            state = OrderState.PARTIALLY_FILLED
        return VenueView(client_order_id=client_order_id, placements=len(orders), state=state,
                         raw_status=latest.status, filled_quantity=latest.filled)

    def rejection(self, kind: RejectionKind) -> Rejection:
        if kind == "insufficient_balance":
            # 100 000 SPY at 600 is 60 M USD; the account holds 1 M
            return Rejection(self.order(quantity=Decimal(100_000)), 201, r"YOUR ORDER IS NOT ACCEPTED")
        if kind == "invalid_quantity":
            return Rejection(self.order(quantity=Decimal("0.5")), 201, r"order size must be a multiple of")
        return Rejection(self.order(symbol="ZZZZ"), 200, r"No security definition has been found")


# -- MT4 (REST bridge) ---------------------------------------------------------------------------

#: MT4 ticket state -> our state, from the bridge contract (README "MT4 bridge contract"),
#: independently of ``adapters/mt4/parsing.py``: a ticket that opened was executed in full
_MT4_STATES: dict[str, OrderState] = {
    "pending": OrderState.SUBMITTED,
    "open": OrderState.FILLED,
    "closed": OrderState.FILLED,
    "deleted": OrderState.CANCELLED,
}


class Mt4Harness(VenueHarness):
    """``venues/mt4/`` (``Mt4Simulator``, the REST bridge over real HTTP) and the httpx ``Mt4Adapter``.

    Quantities are base-currency units (10 000 EURUSD = 0.10 lot); prices are the bid, as on an MT4
    chart. MT4's rate limit is its single trade context: "146 trade context busy"."""

    name = "mt4"
    broker = Broker.MT4
    asset_class = AssetClass.FX
    symbol = "EURUSD"
    base_quantity = Decimal(10_000)
    tick = Decimal("0.00001")
    placement_key = "POST /order/place"
    _contract_size = Decimal(100_000)

    def __init__(self) -> None:
        super().__init__()
        from venues.mt4 import Mt4Simulator

        self._sim = Mt4Simulator(price_path=STILL, api_token=MT4_SIM_TOKEN)

    @property
    def sim(self) -> Controlled:
        return self._sim

    async def start_simulator(self) -> None:
        await self._sim.start()

    async def stop_simulator(self) -> None:
        await self._sim.stop()

    def settings(self) -> VenueSettings:
        return mt4_test_config(self._sim.base_url)

    def price(self) -> Decimal:
        return self._sim.engine.bid_ask(self.symbol)[0]

    def set_price(self, price: Decimal) -> None:
        self._sim.set_price(self.symbol, price)

    def advance(self) -> None:
        self._sim.tick()

    def set_partial_fill_steps(self, steps: int) -> None:
        pytest.skip("MT4 executes a triggered pending order in one deal: its tickets have no partial fills "
                    "(partial closes are covered in tests/contract/test_mt4_adapter.py)")

    def tighten_rate_limit(self) -> None:
        # every placement attempt of the burst, and half as many again, finds the trade context busy
        self._sim.knobs.update({"busy_next": self.burst + self.burst // 2})

    @property
    def throttled(self) -> int:
        return self._sim.stats.errors.get(146, 0)

    def venue_view(self, client_order_id: str) -> VenueView | None:
        tickets = [t for t in self._sim.engine.orders_for_client(client_order_id) if t.client_id == client_order_id]
        placed = [t for t in tickets if t.from_ticket is None]  # remainders of partial closes are not placements
        if not placed:
            return None
        latest = placed[-1]
        filled = sum((t.volume for t in tickets if t.state in ("open", "closed")), Decimal(0)) * self._contract_size
        return VenueView(client_order_id=client_order_id, placements=len(placed), state=_MT4_STATES[latest.state],
                         raw_status=latest.state, filled_quantity=filled.normalize())

    def rejection(self, kind: RejectionKind) -> Rejection:
        if kind == "insufficient_balance":
            # 20 lots EURUSD need ~21 700 USD margin at 1:100; the account holds 10 000
            return Rejection(self.order(quantity=Decimal(2_000_000)), 134, r"not enough money")
        if kind == "invalid_quantity":
            # a whole number of lot steps, but 101 lots: above MT4's maximum of 100
            return Rejection(self.order(quantity=Decimal(10_100_000)), 131, r"invalid trade volume")
        return Rejection(self.order(symbol="EURCHF"), 4106, r"unknown symbol")


#: the bridge simulator's bearer token in the suite: the adapter must send it (and never log it)
MT4_SIM_TOKEN = "mt4-sim-token-5d1e"


def mt4_test_config(base_url: str, **overrides: Any) -> VenueSettings:
    """``Mt4Config`` for a simulator: every field given (the shell's ``MT4_*`` never leaks in),
    short timeouts, a fast backoff and 50 ms polls."""
    from adapters.mt4.config import Mt4Config

    values: dict[str, Any] = {
        **{name: field.get_default(call_default_factory=True) for name, field in Mt4Config.model_fields.items()},
        "enabled": True,
        "base_url": base_url,
        "api_token": SecretStr(MT4_SIM_TOKEN),
        "connect_timeout": 2.0,
        "read_timeout": 3.0,
        "poll_interval": 0.05,
        "backoff": Backoff(attempts=4, base=0.01, factor=2.0, cap=0.05),
    }
    values.update(overrides)
    return Mt4Config(**values)


#: every venue the suite runs against
HARNESSES: tuple[type[VenueHarness], ...] = (BinanceHarness, IbkrHarness, Mt4Harness)
