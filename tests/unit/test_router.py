"""BrokerRouter: the seed's fixed asset-class table, paper fallbacks with reasons, determinism."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.mapper import UnknownSymbol
from execution.router import ROUTING_TABLE, BrokerRouter, RouteDecision
from schemas import AssetClass, Broker, OrderRequest
from tests.unit.fakes import make_signal

ALL_LIVE = (Broker.IBKR, Broker.MT4, Broker.BINANCE)

SEED_ROUTES = {
    AssetClass.EQUITY: Broker.IBKR,
    AssetClass.OPTION: Broker.IBKR,
    AssetClass.FUTURE: Broker.IBKR,
    AssetClass.FX: Broker.MT4,
    AssetClass.CRYPTO: Broker.BINANCE,
}

SAMPLE_SYMBOL = {
    AssetClass.EQUITY: "SPY",
    AssetClass.OPTION: "SPY250321P00400000",
    AssetClass.FUTURE: "ESZ5",
    AssetClass.FX: "EURUSD",
    AssetClass.CRYPTO: "BTC-USDT",
}


def test_routing_table_is_the_seeds() -> None:
    assert dict(ROUTING_TABLE) == SEED_ROUTES
    assert set(ROUTING_TABLE) == set(AssetClass)


@pytest.mark.parametrize(("asset_class", "broker"), SEED_ROUTES.items())
def test_each_asset_class_routes_to_its_broker(asset_class: AssetClass, broker: Broker) -> None:
    router = BrokerRouter(ALL_LIVE)
    decision = router.decide(make_signal(symbol=SAMPLE_SYMBOL[asset_class]))
    assert decision == RouteDecision(asset_class, broker, f"{asset_class} -> {broker}", None)
    # explicit asset class on any symbol gives the same broker
    explicit = router.decide(make_signal(symbol="WHATEVER", asset_class=asset_class))
    assert (explicit.asset_class, explicit.broker, explicit.rerouted_from) == (asset_class, broker, None)


@pytest.mark.parametrize(("symbol", "broker"), [("BTC-USDT", Broker.BINANCE), ("GBTC", Broker.IBKR),
                                                 ("SPY", Broker.IBKR), ("EURUSD", Broker.MT4)])
def test_seed_exchange_mapper_routes(symbol: str, broker: Broker) -> None:
    assert BrokerRouter(ALL_LIVE).decide(make_signal(symbol=symbol)).broker is broker


@pytest.mark.parametrize(("asset_class", "target"), SEED_ROUTES.items())
def test_force_paper_goes_to_paper_with_reason(asset_class: AssetClass, target: Broker) -> None:
    router = BrokerRouter(ALL_LIVE, force_paper=True)
    decision = router.decide(make_signal(symbol=SAMPLE_SYMBOL[asset_class]))
    assert decision.broker is Broker.PAPER
    assert decision.rerouted_from is target
    assert decision.asset_class is asset_class
    assert decision.reason == "FORCE_PAPER_TRADING=true"


@pytest.mark.parametrize(("asset_class", "target"), SEED_ROUTES.items())
def test_missing_live_adapter_goes_to_paper_naming_class_and_broker(
    asset_class: AssetClass, target: Broker
) -> None:
    others = [b for b in ALL_LIVE if b is not target]
    decision = BrokerRouter(others).decide(make_signal(symbol=SAMPLE_SYMBOL[asset_class]))
    assert decision.broker is Broker.PAPER
    assert decision.rerouted_from is target
    assert decision.reason == f"no live adapter configured for {asset_class} ({target})"
    assert asset_class.value in decision.reason and target.value in decision.reason


def test_paper_in_live_set_is_not_a_live_adapter() -> None:
    decision = BrokerRouter([Broker.PAPER]).decide(make_signal(symbol="SPY"))
    assert (decision.broker, decision.rerouted_from) == (Broker.PAPER, Broker.IBKR)


def test_no_live_adapters_at_all_sends_everything_to_paper() -> None:
    router = BrokerRouter([])
    for asset_class, symbol in SAMPLE_SYMBOL.items():
        decision = router.decide(make_signal(symbol=symbol))
        assert decision.broker is Broker.PAPER
        assert decision.rerouted_from is SEED_ROUTES[asset_class]


def test_route_builds_an_order_request() -> None:
    signal = make_signal(signal_id="s-42", symbol="eurusd", side="SELL", quantity=Decimal("0.1"))
    request = BrokerRouter([Broker.IBKR]).route(signal)
    assert isinstance(request, OrderRequest)
    assert request.client_order_id == signal.client_order_id
    assert (request.asset_class, request.broker, request.rerouted_from) == (
        AssetClass.FX, Broker.PAPER, Broker.MT4)
    assert request.route_reason == "no live adapter configured for FX (mt4)"
    assert (request.symbol, request.side, request.quantity) == ("EURUSD", signal.side, Decimal("0.1"))
    assert request.ts == signal.ts


def test_unknown_symbol_propagates() -> None:
    with pytest.raises(UnknownSymbol):
        BrokerRouter(ALL_LIVE).decide(make_signal(symbol="ABCDEFG"))


@pytest.mark.parametrize("force_paper", [False, True])
def test_routing_is_deterministic(force_paper: bool) -> None:
    router = BrokerRouter([Broker.IBKR, Broker.BINANCE], force_paper=force_paper)
    signals = [make_signal(signal_id=f"s{i}", symbol=s) for i, s in enumerate(SAMPLE_SYMBOL.values())]
    first = [router.decide(s) for s in signals]
    for _ in range(1000):
        assert [router.decide(s) for s in signals] == first
    # a fresh router with the same configuration agrees too
    again = BrokerRouter([Broker.BINANCE, Broker.IBKR], force_paper=force_paper)
    assert [again.decide(s) for s in signals] == first
    requests = [router.route(signals[0]) for _ in range(1000)]
    assert {(r.broker, r.route_reason, r.client_order_id) for r in requests} == {
        (first[0].broker, first[0].reason, signals[0].client_order_id)}


def test_fx_takes_its_secondary_route_when_mt4_has_no_live_adapter() -> None:
    signal = make_signal(symbol="EURUSD", asset_class=None)
    with_second = BrokerRouter({Broker.IBKR}, secondary={AssetClass.FX: Broker.IBKR}).decide(signal)
    assert with_second.broker is Broker.IBKR and with_second.rerouted_from is Broker.MT4
    assert "secondary route ibkr" in with_second.reason
    # a secondary that is not live itself is no route: paper, as without one
    assert BrokerRouter(set(), secondary={AssetClass.FX: Broker.IBKR}).decide(signal).broker is Broker.PAPER
    # MT4 live: the primary wins
    assert BrokerRouter({Broker.MT4, Broker.IBKR}, secondary={AssetClass.FX: Broker.IBKR}).decide(signal).broker \
        is Broker.MT4
