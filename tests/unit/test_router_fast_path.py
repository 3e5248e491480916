"""BrokerRouter.route builds the OrderRequest from the validated Signal without validating it again
and caches decisions per (symbol, asset class) (issue 16, item 3). Property: for random producer
signals and every router configuration, the result is what ``OrderRequest.from_signal`` (full
validation) gives: the same request, byte for byte and value for value, or the same error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from execution.clock import ManualClock
from execution.mapper import ExchangeMapper, UnknownSymbol
from execution.router import _CACHE_SIZE, BrokerRouter
from schemas import AssetClass, Broker, OrderRequest, Signal
from tests.unit import wire_random
from tests.unit.fakes import make_signal

LONG_CRYPTO = "A" * 60 + "USDT"  # 64 characters; its canonical BASE-QUOTE spelling has 65
ROUTERS = {
    "all live": dict(live_brokers=[Broker.IBKR, Broker.MT4, Broker.BINANCE]),
    "none live": dict(live_brokers=[]),
    "paper forced": dict(live_brokers=[Broker.BINANCE], force_paper=True),
    "fx secondary": dict(live_brokers=[Broker.IBKR], secondary={AssetClass.FX: Broker.IBKR}),
    # a mapper that infers CRYPTO for a symbol whose canonical spelling is too long for the contract
    "override": dict(live_brokers=[Broker.BINANCE], mapper=ExchangeMapper({LONG_CRYPTO: AssetClass.CRYPTO})),
}


def _validated_route(router: BrokerRouter, signal: Signal, at: datetime) -> OrderRequest:
    """The reference: the decision, then full validation of the request (the code before issue 16)."""
    decision = router.decide(signal)
    return OrderRequest.from_signal(signal, asset_class=decision.asset_class, broker=decision.broker,
                                    reason=decision.reason, rerouted_from=decision.rerouted_from, at=at)


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except (ValidationError, UnknownSymbol) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("config", ROUTERS, ids=list(ROUTERS))
def test_routing_equals_full_validation_for_random_signals(config: str) -> None:
    at = datetime(2026, 11, 30, 9, 30, 0, 123456, tzinfo=UTC)
    router = BrokerRouter(clock=ManualClock(at), **ROUTERS[config])  # type: ignore[arg-type]
    reference = BrokerRouter(clock=ManualClock(at), **ROUTERS[config])  # type: ignore[arg-type]
    outcomes: dict[str, int] = {}
    valid = [s for _, s in wire_random.signals(seed=1600, n=2500) if s is not None]
    for signal in valid:
        got = _outcome(lambda s=signal: router.route(s))
        want = _outcome(lambda s=signal: _validated_route(reference, s, at))
        assert got[0] == want[0], (signal, got, want)
        outcomes[got[0]] = outcomes.get(got[0], 0) + 1
        if got[0] != "ok":
            assert got[1] == want[1]
            continue
        new, old = got[1], want[1]
        assert new.to_bytes() == old.model_dump_json().encode()
        assert repr(new.__dict__) == repr(old.__dict__)  # same values, types, decimal exponents, zones
        assert new.model_fields_set == old.model_fields_set
        assert new == old and hash(new.model_dump_json()) == hash(old.model_dump_json())
    assert outcomes.get("ok", 0) > 500
    assert outcomes.get("UnknownSymbol", 0) > 0  # refusals are compared too


def test_a_canonical_symbol_too_long_for_the_contract_is_refused_as_before() -> None:
    router = BrokerRouter([Broker.BINANCE], mapper=ExchangeMapper({LONG_CRYPTO: AssetClass.CRYPTO}))
    signal = make_signal(symbol=LONG_CRYPTO)
    with pytest.raises(ValidationError, match="symbol"):
        router.route(signal)
    with pytest.raises(ValidationError, match="symbol"):  # and again, from the cached decision
        router.route(signal)


def test_a_clock_without_a_timezone_is_refused_as_before() -> None:
    class NaiveClock:
        def now(self) -> datetime:
            return datetime(2026, 1, 1)

    with pytest.raises(ValidationError, match="timezone"):
        BrokerRouter([], clock=NaiveClock()).route(make_signal())  # type: ignore[arg-type]


def test_routing_time_keeps_its_zone() -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    request = BrokerRouter([], clock=ManualClock(at)).route(make_signal())
    assert request.routed_at == at and request.to_bytes() == request.model_dump_json().encode()
    assert b'"routed_at":"2026-01-01T12:00:00+02:00"' in request.to_bytes()


def test_unknown_symbols_are_refused_every_time_with_the_reason() -> None:
    router = BrokerRouter([])
    for _ in range(3):
        with pytest.raises(UnknownSymbol, match="cannot infer asset class of symbol 'ZZZZZZZ'"):
            router.route(make_signal(symbol="ZZZZZZZ"))


def test_the_decision_cache_is_bounded() -> None:
    router = BrokerRouter([])
    for i in range(_CACHE_SIZE + 10):
        router.route(make_signal(symbol=f"S{i}", asset_class=AssetClass.EQUITY))
    assert len(router._cache) <= _CACHE_SIZE
    assert router.route(make_signal(symbol="S1", asset_class=AssetClass.EQUITY)).symbol == "S1"
