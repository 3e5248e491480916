"""What a simulator counts, for tests (attributes) and chaos drills (``GET /_sim/stats``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from venues.common.faults import FAULT_KINDS


@dataclass(slots=True)
class SimStats:
    """Counters of one running simulator. ``/_sim`` control requests are never counted."""

    #: venue requests received (TCP venues: connections and messages), faulted ones included
    requests: int = 0
    #: ``"METHOD /path"`` (TCP: the message name, ``"CONNECT"``) -> requests received
    by_endpoint: dict[str, int] = field(default_factory=dict)
    #: orders the venue accepted, including those whose response was then lost
    orders_placed: int = 0
    #: fault kind (``latency``, ``fail``, ``drop``, ``lose``) -> requests it was applied to
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    #: requests refused by the venue's rate limit
    throttled: int = 0
    #: requests refused for credentials (key or signature)
    auth_failures: int = 0
    #: venue error code -> how many times it was answered
    errors: dict[int | str, int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)

    def count_request(self, endpoint: str) -> None:
        self.requests += 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1

    def count_fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def count_error(self, code: int | str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_endpoint": dict(self.by_endpoint),
            "orders_placed": self.orders_placed,
            "faults": dict(self.faults),
            "faults_injected": self.faults_injected,
            "throttled": self.throttled,
            "auth_failures": self.auth_failures,
            "errors": {str(code): n for code, n in self.errors.items()},
            "uptime_seconds": round(time.monotonic() - self.started_at, 3),
        }
