"""BrokerRouter: the seed's fixed asset-class -> broker table, nothing probabilistic.

The router only decides *where* an order should go given static configuration (which live
adapters exist, FORCE_PAPER_TRADING). Runtime health (breakers, failed health checks) is the
executor's business at step 3, because only the executor talks to the venue.

Hot path (issue 16, item 3): every signal is routed, so two things are done once, not per signal.
The decision depends only on the symbol and the explicit asset class (the configuration is fixed),
so it is cached per ``(symbol, asset_class)``, with the canonical symbol (a bounded cache: symbols
come from producers). And the OrderRequest is built from the already validated Signal instead of
validating all its fields again (``WireModel.from_validated``); ``route`` says why each value is
valid, and falls back to full validation for the two cases that could fail it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from execution.clock import SYSTEM_CLOCK, Clock
from execution.mapper import ExchangeMapper, UnknownSymbol
from schemas import AssetClass, Broker, OrderRequest, Signal
from schemas.fields import Symbol
from schemas.symbols import canonical_symbol

ROUTING_TABLE: Mapping[AssetClass, Broker] = {
    AssetClass.EQUITY: Broker.IBKR,
    AssetClass.OPTION: Broker.IBKR,
    AssetClass.FUTURE: Broker.IBKR,
    AssetClass.FX: Broker.MT4,
    AssetClass.CRYPTO: Broker.BINANCE,
}


@dataclass(frozen=True, slots=True)
class RouteDecision:
    asset_class: AssetClass
    broker: Broker
    reason: str
    rerouted_from: Broker | None = None


class BrokerRouter:
    def __init__(
        self,
        live_brokers: Collection[Broker],
        *,
        force_paper: bool = False,
        mapper: ExchangeMapper | None = None,
        clock: Clock = SYSTEM_CLOCK,
        secondary: Mapping[AssetClass, Broker] | None = None,
    ) -> None:
        self._live = frozenset(live_brokers) - {Broker.PAPER}
        #: asset class -> the live venue that takes it when its primary has no live adapter
        self._secondary = {ac: b for ac, b in (secondary or {}).items() if b in self._live}
        self._clock = clock
        self._force_paper = force_paper
        self._mapper = mapper or ExchangeMapper()
        #: (symbol, explicit class) -> the decision, or UnknownSymbol's message
        self._cache: dict[tuple[str, AssetClass | None], _Resolved | str] = {}

    def decide(self, signal: Signal) -> RouteDecision:
        """Raises ``UnknownSymbol`` when the asset class cannot be determined."""
        return self._resolve(signal.symbol, signal.asset_class).decision

    def _resolve(self, symbol: str, explicit: AssetClass | None) -> _Resolved:
        key = (symbol, explicit)
        found = self._cache.get(key)
        if found is None:
            try:
                decision = self._decide(symbol, explicit)
            except UnknownSymbol as exc:
                found = str(exc)
            else:
                canonical = canonical_symbol(symbol, decision.asset_class).strip().upper()
                found = _Resolved(decision, canonical, canonical == symbol or _is_symbol(canonical))
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()  # symbols come from producers: bounded, and hot ones return at once
            self._cache[key] = found
        if isinstance(found, str):
            raise UnknownSymbol(found)
        return found

    def _decide(self, symbol: str, explicit: AssetClass | None) -> RouteDecision:
        asset_class = self._mapper.asset_class(symbol, explicit)
        target = ROUTING_TABLE[asset_class]
        if self._force_paper:
            return RouteDecision(asset_class, Broker.PAPER, "FORCE_PAPER_TRADING=true", target)
        if target not in self._live:
            second = self._secondary.get(asset_class)
            if second is not None:
                return RouteDecision(asset_class, second,
                                     f"no live adapter configured for {asset_class} ({target}); "
                                     f"secondary route {second}", target)
            return RouteDecision(
                asset_class,
                Broker.PAPER,
                f"no live adapter configured for {asset_class} ({target})",
                target,
            )
        return RouteDecision(asset_class, target, f"{asset_class} -> {target}")

    def route(self, signal: Signal) -> OrderRequest:
        """The OrderRequest for a validated ``signal`` (raises ``UnknownSymbol``, or pydantic's
        ``ValidationError`` when the request would break a rule of the wire contract).

        Exactly what ``OrderRequest.from_signal`` validates (tests/unit/test_router_fast_path.py
        compares the two on random signals), without validating the signal's fields again: they
        hold because ``signal`` is a validated Signal and OrderRequest has the same rules for
        them (OrderIntent's); the price rules read only fields copied unchanged. The values added
        are valid by construction: the client order id is ``si`` + 24 hex digits, the asset class
        and brokers are enum members, the reason is built from them. Two could fail validation,
        and then ``from_signal`` runs and raises what it always did: a canonical symbol that is
        not a valid ``Symbol`` (``BTCUSDT`` -> ``BTC-USDT`` is one character longer) and a routing
        time without a timezone (a clock that is not aware)."""
        resolved = self._resolve(signal.symbol, signal.asset_class)
        decision = resolved.decision
        at = self._clock.now()
        if not resolved.symbol_ok or not _aware(at):
            return OrderRequest.from_signal(signal, asset_class=decision.asset_class, broker=decision.broker,
                                            reason=decision.reason, rerouted_from=decision.rerouted_from, at=at)
        values = dict(signal.__dict__)
        values["symbol"] = resolved.symbol
        values["asset_class"] = decision.asset_class
        # the added fields in OrderRequest's field order, so from_validated keeps this dict as is
        values["client_order_id"] = signal.client_order_id
        values["broker"] = decision.broker
        values["route_reason"] = decision.reason
        values["rerouted_from"] = decision.rerouted_from
        values["routed_at"] = at
        return OrderRequest.from_validated(values)


#: (symbol, explicit asset class) decisions kept by a router; past it the cache starts over
_CACHE_SIZE = 4096
_SYMBOL: TypeAdapter[str] = TypeAdapter(Symbol)


@dataclass(frozen=True, slots=True)
class _Resolved:
    decision: RouteDecision
    #: the canonical spelling for the decided asset class, as OrderRequest validation makes it
    symbol: str
    #: whether that spelling is a valid ``Symbol`` (it is whenever it equals the validated one)
    symbol_ok: bool


def _is_symbol(value: str) -> bool:
    try:
        _SYMBOL.validate_python(value)
    except ValidationError:
        return False
    return True


def _aware(at: datetime) -> bool:
    return at.tzinfo is not None and at.utcoffset() is not None
