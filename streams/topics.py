"""Topic names (README.md, Topics) in one place, so producers, agents, replay and tests agree."""

from __future__ import annotations

from schemas import Broker

SIGNALS = "signals"
ORDER_EVENTS = "order-events"
FILLS = "fills"
NAV_QUOTES = "nav.quotes"
#: internal: the NAV-arb legs' terminal order events, keyed by pair (agents/nav_arb.py)
NAV_LEGS = "nav.legs"
DLQ = "signals.dlq"


def orders_topic(broker: Broker) -> str:
    return f"orders.{broker}"


ORDER_TOPICS = {broker: orders_topic(broker) for broker in Broker}
ALL_TOPICS = (SIGNALS, *ORDER_TOPICS.values(), ORDER_EVENTS, FILLS, NAV_QUOTES, NAV_LEGS, DLQ)
