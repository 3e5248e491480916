"""The paper-fallback policy: one live venue with the PaperAdapter behind it (CompositeBrokerAdapter).

Pure policy over ports (no I/O of its own), so it lives in the core and is unit-tested with fakes.

This is where "no order is ever silently dropped" is enforced at placement time: when the live
venue is forced off (FORCE_PAPER_TRADING), missing, unhealthy, behind an open circuit breaker,
or fails in transport while placing, the order moves to paper and carries the reason
(``rerouted_from`` + ``reason``) into the database and onto ``order-events``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from execution.breaker import CircuitBreaker
from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import BrokerPort, BrokerUnavailable, OrderRejected, PlacementUnknown, VenueOrderStatus
from schemas import Broker, Order

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Placement:
    """The order as placed (possibly rerouted) and the venue's first answer."""

    order: Order
    status: VenueOrderStatus
    adapter: BrokerPort


class CompositeBrokerAdapter:
    def __init__(
        self,
        live: BrokerPort | None,
        paper: BrokerPort,
        breaker: CircuitBreaker,
        *,
        force_paper: bool = False,
        health_ttl: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.live = live
        self.paper = paper
        self.breaker = breaker
        self._force_paper = force_paper
        self._health_ttl = health_ttl
        self._clock = clock
        self._health: tuple[float, bool] | None = None

    @property
    def name(self) -> Broker:
        return self.live.name if self.live is not None else self.paper.name

    def adapter_for(self, broker: Broker) -> BrokerPort:
        if self.live is not None and broker == self.live.name:
            return self.live
        return self.paper

    async def gateway(self) -> tuple[BrokerPort, str]:
        """Step 3 (connect_gateway): the adapter that takes new orders now, and if that is paper
        in place of the live venue, why."""
        if self.live is None:
            return self.paper, ""
        if self._force_paper:
            return self.paper, "FORCE_PAPER_TRADING=true"
        if not self.breaker.allow():
            return self.paper, f"{self.live.name} circuit breaker open: {self.breaker.last_reason}"
        healthy, fresh = await self._healthy(self.live)
        if not healthy:
            if fresh:  # one failed check is one failure, however many batches see its cached result
                self.breaker.record_failure("health check failed")
            return self.paper, f"{self.live.name} failed health_check"
        return self.live, ""

    async def place(self, order: Order, gateway: BrokerPort, reason: str) -> Placement:
        """Step 4. Raises ``OrderRejected`` when the venue (or paper) refuses the order."""
        adapter = self.adapter_for(order.broker)
        if adapter is not self.paper and gateway is self.paper:
            order, adapter = order.rerouted(Broker.PAPER, reason, at=self._clock.now()), self.paper
        try:
            status = await adapter.place(order)
        except PlacementUnknown as exc:  # may be working at the venue: never place it elsewhere
            self.breaker.record_failure(f"placement outcome unknown: {exc}")
            self._health = None
            exc.order = order
            raise
        except BrokerUnavailable as exc:
            if adapter is self.paper:
                raise OrderRejected(f"paper unavailable: {exc}") from exc
            self.breaker.record_failure(str(exc))
            self._health = None
            log.warning("%s unavailable placing %s (%s); rerouting to paper",
                        adapter.name, order.client_order_id, exc)
            return await self.place(
                order.rerouted(Broker.PAPER, f"{adapter.name} unavailable: {exc}", at=self._clock.now()),
                self.paper, "")
        except OrderRejected as exc:
            if adapter is not self.paper:
                self.breaker.record_success()  # the venue answered: transport is healthy
            exc.order = order
            raise
        if adapter is not self.paper:
            self.breaker.record_success()
        return Placement(order, status, adapter)

    async def _healthy(self, live: BrokerPort) -> tuple[bool, bool]:
        """(healthy, whether this was a fresh check rather than the cached answer)."""
        now = self._clock.monotonic()
        if self._health is not None and now - self._health[0] < self._health_ttl:
            return self._health[1], False
        try:
            ok = await live.health_check()
        except Exception as exc:  # a health check must never take the executor down
            log.warning("%s health_check raised %r", live.name, exc)
            ok = False
        self._health = (now, ok)
        return ok, True
