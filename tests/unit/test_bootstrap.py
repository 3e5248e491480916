"""The composition root, composed without Kafka, PostgreSQL or Redis: a venue registered through
the same registry as Binance is traded end to end (route -> steps 1-5 -> fills -> books), paper
is priced by the market data of whichever venue offers the asset class, and a composition on a
ManualClock gives byte-identical results twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal as D

from pydantic_settings import SettingsConfigDict

from adapters.memory import InMemoryFillPublisher, InMemoryStore
from adapters.registry import VenueRegistry, default_registry
from adapters.venue import VenueParts, VenuePlugin, VenueSettings
from execution.clock import Clock, ManualClock
from execution.ports import Quote, UpdateListener, VenueExecution, VenueOrderStatus
from schemas import AssetClass, Broker, Fill, Order, OrderEvent, OrderState, Signal
from streams.bootstrap import Bootstrap, ClosablePublisher, Store
from streams.settings import Settings


class FakeFxSettings(VenueSettings):
    model_config = SettingsConfigDict(env_prefix="FAKEFX_", extra="ignore")

    enabled: bool = True
    mid: D = D("1.1000")


class FakeFxVenue:
    """A push venue: accepts every order and pushes one execution at its mid for it."""

    name = Broker.MT4
    poll_interval: float | None = None

    def __init__(self, settings: FakeFxSettings, clock: Clock) -> None:
        self._mid = settings.mid
        self._clock = clock
        self._listeners: list[UpdateListener] = []
        self.placed: list[Order] = []

    def subscribe(self, listener: UpdateListener) -> None:
        self._listeners.append(listener)

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def health_check(self) -> bool:
        return True

    async def place(self, order: Order) -> VenueOrderStatus:
        self.placed.append(order)
        execution = VenueExecution(order.client_order_id, f"E{len(self.placed)}", f"T{len(self.placed)}",
                                   order.quantity, self._mid, D("0.5"), "USD", self._clock.now())
        for listener in self._listeners:
            listener.on_execution(execution)
        return VenueOrderStatus(order.client_order_id, f"T{len(self.placed)}", OrderState.SUBMITTED)

    async def cancel(self, order: Order) -> VenueOrderStatus:
        return VenueOrderStatus(order.client_order_id, None, OrderState.CANCELLED)

    async def query(self, order: Order) -> VenueOrderStatus | None:
        return None

    async def quote(self, symbol: str) -> Quote:
        return Quote(symbol, self._mid - D("0.0001"), self._mid + D("0.0001"), self._mid)


def _build(settings: FakeFxSettings, clock: Clock) -> VenueParts:
    venue = FakeFxVenue(settings, clock)
    return VenueParts(broker=venue, market_data=venue)


FAKE_FX = VenuePlugin(broker=Broker.MT4, settings_type=FakeFxSettings, factory=_build, fill_delivery="push",
                      priced_classes=frozenset({AssetClass.FX}), description="test FX venue")


class Sink:
    """ExecutionEvents kept in lists (the topics, in a composition without Kafka)."""

    def __init__(self) -> None:
        self.emitted: list[Fill] = []
        self.events: list[OrderEvent] = []

    async def fills(self, fills: Sequence[Fill]) -> None:
        self.emitted.extend(fills)

    async def order_events(self, events: Sequence[OrderEvent]) -> None:
        self.events.extend(events)


def _composition(clock: Clock, store: InMemoryStore, **settings: object) -> Bootstrap:
    async def memory_store(_: Settings) -> Store:
        return store

    async def memory_publisher(_: Settings) -> ClosablePublisher:
        return InMemoryFillPublisher()

    return Bootstrap(Settings(**settings), clock=clock, registry=VenueRegistry((FAKE_FX,)),  # type: ignore[arg-type]
                     store=memory_store, publisher=memory_publisher, transient=(OSError,))


def _signal(n: int, symbol: str = "EURUSD", **kw: object) -> Signal:
    return Signal(signal_id=f"fx-{n}", strategy="t", symbol=symbol, side="BUY" if n % 2 else "SELL",
                  quantity=D("10000"), ts=datetime(2026, 3, 2, 9, 30, tzinfo=UTC), **kw)  # type: ignore[arg-type]


async def _trade(n_signals: int, **settings: object) -> tuple[Sink, InMemoryStore, Bootstrap]:
    clock = ManualClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    store = InMemoryStore(now=clock.now)
    boot = _composition(clock, store, **settings)
    sink = Sink()
    router = boot.router()
    for n in range(n_signals):
        clock.advance(0.25)
        request = router.route(_signal(n))
        service = await boot.service(request.broker, sink)
        await service.handle([request])
        await service.tracker.apply_pushed()
    await store.apply_fills(sink.emitted)
    return sink, store, boot


async def test_a_venue_registered_through_the_registry_is_routed_to_and_traded() -> None:
    sink, store, boot = await _trade(4)
    assert boot.live_brokers() == {Broker.MT4}
    assert {f.broker for f in sink.emitted} == {Broker.MT4}
    assert [f.exec_id for f in sink.emitted] == ["mt4-E1", "mt4-E2", "mt4-E3", "mt4-E4"]
    assert {f.commission for f in sink.emitted} == {D("0.5")}
    orders = await store.get_orders([_signal(n).client_order_id for n in range(4)])
    assert {o.state for o in orders.values()} == {OrderState.FILLED}
    [position] = await store.positions(Broker.MT4)
    assert position.symbol == "EURUSD" and position.quantity == 0  # two buys, two sells
    await boot.close()


async def test_paper_is_priced_by_the_venue_that_offers_the_asset_class() -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    store = InMemoryStore(now=clock.now)
    boot = _composition(clock, store, FORCE_PAPER_TRADING=True)
    sink = Sink()
    request = boot.router().route(_signal(1))  # no reference_price: only market data can price it
    assert request.broker is Broker.PAPER
    service = await boot.service(Broker.PAPER, sink)
    [order] = await service.handle([request])
    assert order.state is OrderState.FILLED, order.reason
    assert sink.emitted[0].price == D("1.1000") * D("1.001")  # mid + paper slippage against the buyer
    # a class no registered venue prices falls back to the reference price, else a clear rejection
    [equity] = await service.handle([boot.router().route(_signal(3, symbol="SPY"))])
    assert equity.state is OrderState.REJECTED and "no reference_price and no market data" in equity.reason


async def test_the_same_composition_on_a_manual_clock_repeats_exactly() -> None:
    first, _, _ = await _trade(6)
    second, _, _ = await _trade(6)
    assert [f.to_bytes() for f in first.emitted] == [f.to_bytes() for f in second.emitted]
    assert [e.to_bytes() for e in first.events] == [e.to_bytes() for e in second.events]
    assert {e.ts for e in first.events} <= {datetime(2026, 3, 2, 9, 30, tzinfo=UTC).replace(second=s, microsecond=m)
                                          for s in range(0, 3) for m in (0, 250_000, 500_000, 750_000)}


def test_the_default_registry_lists_the_venue_plugins() -> None:
    registry = default_registry()
    assert [p.broker for p in registry] == [Broker.BINANCE, Broker.IBKR, Broker.MT4]
    binance, ibkr, mt4 = registry
    assert binance.fill_delivery == "poll" and binance.priced_classes == frozenset({AssetClass.CRYPTO})
    assert ibkr.fill_delivery == "push"
    assert ibkr.priced_classes == frozenset({AssetClass.EQUITY, AssetClass.OPTION, AssetClass.FUTURE})
    assert ibkr.secondary_for(ibkr.settings(fx_secondary=True)) == frozenset({AssetClass.FX})
    assert ibkr.secondary_for(ibkr.settings()) == frozenset()
    assert mt4.fill_delivery == "poll" and mt4.priced_classes == frozenset({AssetClass.FX})
    assert mt4.secondary_for(mt4.settings()) == frozenset()
