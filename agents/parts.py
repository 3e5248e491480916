"""What agents are handed: the narrow parts of the composition each one needs.

The composition root (``streams/bootstrap.py``) builds these; an agent never sees the app's
composition, settings or other agents' parts, so agents depend on the core and these values only.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from faust.types import TopicT

from execution.nav_arb import NavArbParams, NavArbStore
from execution.ports import ExecutionEvents, FillPublisher, FillStore
from execution.service import ExecutionService
from schemas import Broker


@dataclass(frozen=True, slots=True)
class AgentTopics:
    signals: TopicT
    orders: Mapping[Broker, TopicT]
    order_events: TopicT
    fills: TopicT
    nav_quotes: TopicT
    dlq: TopicT
    #: the NAV-arb legs' terminal order events, re-keyed by pair (agents/nav_arb.py)
    nav_legs: TopicT


@dataclass(frozen=True, slots=True)
class ExecutorParts:
    """What one executor agent needs: its service (built on first use), what to retry, and the
    random source of the retries' jitter."""

    service: Callable[[ExecutionEvents], Awaitable[ExecutionService]]
    transient: tuple[type[BaseException], ...]
    rng: random.Random
    #: seconds between sweeps for orders whose claim expired (ORDER_SWEEP_INTERVAL)
    sweep_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class FillSinks:
    """What the fills agents need: the store (steps 6-7) and the publisher (step 8)."""

    store: Callable[[], Awaitable[FillStore]]
    publisher: Callable[[], Awaitable[FillPublisher]]
    transient: tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class NavArbParts:
    """What the NAV-arb agent needs: its durable state (built on first use), the rule's
    parameters per pair, the spot venue's price of a symbol (for quotes without a spot price),
    what to retry, and the random source of the retries' jitter."""

    store: Callable[[], Awaitable[NavArbStore]]
    params: Callable[[str], NavArbParams]
    spot_price: Callable[[str], Awaitable[Decimal | None]]
    transient: tuple[type[BaseException], ...]
    rng: random.Random
