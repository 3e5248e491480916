"""The fallback policy: a live venue, optionally a secondary live venue, and paper behind them.

Pure policy over ports (no I/O of its own), so it lives in the core and is unit-tested with fakes.

This is where "no order is ever silently dropped" is enforced at placement time: when the live
venue is forced off (FORCE_PAPER_TRADING), missing, unhealthy, behind an open circuit breaker,
or fails in transport while placing, the order moves on and carries the reason
(``rerouted_from`` + ``reason``) into the database and onto ``order-events``. The chain is
live -> secondary live (FX: MT4 first, then IBKR with ``IBKR_FX_SECONDARY=true``) -> paper.

A venue may say what its orders do while it is unavailable (``UnavailablePolicy``: IBKR's
``IBKR_DISCONNECTED_POLICY``): ``paper`` (the rule above), ``hold`` (``PlacementDeferred``: the
order stays PENDING with the reason and is offered again later) or ``reject``. FORCE_PAPER_TRADING
is the operator's decision, not an outage: it always means paper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from execution.breaker import CircuitBreaker
from execution.clock import SYSTEM_CLOCK, Clock
from execution.ports import (
    BrokerPort,
    BrokerUnavailable,
    OrderRejected,
    PlacementDeferred,
    PlacementUnknown,
    UnavailablePolicy,
    VenueOrderStatus,
)
from schemas import Broker, Order

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Placement:
    """The order as placed (possibly rerouted) and the venue's first answer."""

    order: Order
    status: VenueOrderStatus
    adapter: BrokerPort


class _Health:
    """A venue's health_check, cached for ``ttl`` seconds, counted against its breaker."""

    def __init__(self, venue: BrokerPort, breaker: CircuitBreaker, ttl: float, clock: Clock) -> None:
        self.venue = venue
        self.breaker = breaker
        self._ttl = ttl
        self._clock = clock
        self._last: tuple[float, bool] | None = None

    def invalidate(self) -> None:
        self._last = None

    async def unavailable(self) -> str | None:
        """Why the venue cannot take orders now, or None if it can."""
        if not self.breaker.allow():
            return f"{self.venue.name} circuit breaker open: {self.breaker.last_reason}"
        now = self._clock.monotonic()
        if self._last is not None and now - self._last[0] < self._ttl:
            healthy, fresh = self._last[1], False
        else:
            try:
                healthy = await self.venue.health_check()
            except Exception as exc:  # a health check must never take the executor down
                log.warning("%s health_check raised %r", self.venue.name, exc)
                healthy = False
            self._last, fresh = (now, healthy), True
        if healthy:
            return None
        if fresh:  # one failed check is one failure, however many batches see its cached result
            self.breaker.record_failure("health check failed")
        detail = getattr(self.venue, "unavailable_reason", "")  # a venue that can say why (IBKR)
        return f"{self.venue.name} failed health_check" + (f" ({detail})" if detail else "")


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
        secondary: BrokerPort | None = None,
        secondary_breaker: CircuitBreaker | None = None,
    ) -> None:
        self.live = live
        self.paper = paper
        self.secondary = secondary
        self.breaker = breaker
        self._force_paper = force_paper
        self._clock = clock
        self._live_health = _Health(live, breaker, health_ttl, clock) if live is not None else None
        self._secondary_health = (
            _Health(secondary, secondary_breaker or CircuitBreaker(secondary.name, clock=clock), health_ttl, clock)
            if secondary is not None else None)

    @property
    def name(self) -> Broker:
        return self.live.name if self.live is not None else self.paper.name

    def adapter_for(self, broker: Broker) -> BrokerPort:
        if self.live is not None and broker == self.live.name:
            return self.live
        if self.secondary is not None and broker == self.secondary.name:
            return self.secondary
        return self.paper

    async def gateway(self) -> tuple[BrokerPort, str]:
        """Step 3 (connect_gateway): the adapter that takes new orders now, and if that is not
        the live venue, why."""
        if self.live is None or self._live_health is None:
            return self.paper, ""
        if self._force_paper:
            return self.paper, "FORCE_PAPER_TRADING=true"
        reason = await self._live_health.unavailable()
        if reason is None:
            return self.live, ""
        if self.secondary is not None and self._secondary_health is not None:
            why_not = await self._secondary_health.unavailable()
            if why_not is None:
                return self.secondary, f"{reason}; secondary route {self.secondary.name}"
            reason = f"{reason}; secondary {why_not}"
        return self.paper, reason

    async def place(self, order: Order, gateway: BrokerPort, reason: str) -> Placement:
        """Step 4. Raises ``OrderRejected`` when the venue (or paper) refuses the order and
        ``PlacementDeferred`` when the venue's policy holds it while the venue is unavailable."""
        adapter = self.adapter_for(order.broker)
        if adapter is self.live and gateway is not self.live:
            if gateway is self.paper and not self._force_paper:
                self._unless_paper_allowed(order, reason)
            order, adapter = order.rerouted(gateway.name, reason, at=self._clock.now()), gateway
        try:
            status = await adapter.place(order)
        except PlacementUnknown as exc:  # may be working at the venue: never place it elsewhere
            self._failure(adapter, f"placement outcome unknown: {exc}")
            exc.order = order
            raise
        except BrokerUnavailable as exc:
            if adapter is self.paper:
                raise OrderRejected(f"paper unavailable: {exc}") from exc
            self._failure(adapter, str(exc))
            log.warning("%s unavailable placing %s (%s); falling back", adapter.name, order.client_order_id, exc)
            why = f"{adapter.name} unavailable: {exc}"
            if adapter is self.live:
                self._unless_paper_allowed(order, why)
                if self.secondary is not None and self._secondary_health is not None:
                    why_not = await self._secondary_health.unavailable()
                    if why_not is None:
                        return await self.place(order.rerouted(self.secondary.name, why, at=self._clock.now()),
                                                self.secondary, "")
                    why = f"{why}; secondary {why_not}"
            return await self.place(order.rerouted(Broker.PAPER, why, at=self._clock.now()), self.paper, "")
        except OrderRejected as exc:
            if adapter is not self.paper:
                self._breaker(adapter).record_success()  # the venue answered: transport is healthy
            exc.order = order
            raise
        if adapter is not self.paper:
            self._breaker(adapter).record_success()
        return Placement(order, status, adapter)

    def _unless_paper_allowed(self, order: Order, reason: str) -> None:
        """Raise what the live venue's policy wants instead of paper, if it wants something else."""
        live = self.live
        if not isinstance(live, UnavailablePolicy):
            return
        policy = live.when_unavailable(order)
        if policy == "hold":
            raise PlacementDeferred(f"{reason}; held until {live.name} is back "
                                    f"({live.name.upper()}_DISCONNECTED_POLICY=hold)")
        if policy == "reject":
            raise OrderRejected(f"{reason}; not placed elsewhere ({live.name.upper()}_DISCONNECTED_POLICY=reject)")

    def _breaker(self, adapter: BrokerPort) -> CircuitBreaker:
        if adapter is self.secondary and self._secondary_health is not None:
            return self._secondary_health.breaker
        return self.breaker

    def _failure(self, adapter: BrokerPort, reason: str) -> None:
        self._breaker(adapter).record_failure(reason)
        for health in (self._live_health, self._secondary_health):
            if health is not None and health.venue is adapter:
                health.invalidate()
