"""BrokerRouter: the seed's fixed asset-class -> broker table, nothing probabilistic.

The router only decides *where* an order should go given static configuration (which live
adapters exist, FORCE_PAPER_TRADING). Runtime health (breakers, failed health checks) is the
executor's business at step 3, because only the executor talks to the venue.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from execution.clock import SYSTEM_CLOCK, Clock
from execution.mapper import ExchangeMapper
from schemas import AssetClass, Broker, OrderRequest, Signal

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

    def decide(self, signal: Signal) -> RouteDecision:
        """Raises ``UnknownSymbol`` when the asset class cannot be determined."""
        asset_class = self._mapper.asset_class(signal.symbol, signal.asset_class)
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
        decision = self.decide(signal)
        return OrderRequest.from_signal(
            signal,
            asset_class=decision.asset_class,
            broker=decision.broker,
            reason=decision.reason,
            rerouted_from=decision.rerouted_from,
            at=self._clock.now(),
        )
