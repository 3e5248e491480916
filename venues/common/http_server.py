"""An HTTP venue's server: its handler behind the shared faults and stats, plus ``/_sim`` control.

The venue supplies one handler for its API and a ``classify(method, path) -> Route`` naming each
request's endpoint and ``Op``; everything a flaky network or gateway would do happens here,
before the venue sees the request, the same for every HTTP simulator (Binance, MT4's bridge).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from venues.common.control import AppServer, Controlled, ExtraRoutes, add_control_routes, is_control_path
from venues.common.faults import Fault, Op

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """How the fault layer sees one request: its endpoint name for stats and what it does."""

    name: str
    op: Op


Classify = Callable[[str, str], Route]


def fault_middleware(target: Controlled, classify: Classify) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Count, delay and fault every venue request as ``target.faults`` says (read per request)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_control_path(request.path):
            return await handler(request)
        route = classify(request.method, request.path)
        stats = target.stats
        stats.count_request(route.name)
        faults = target.faults
        if faults.latency > 0:
            stats.count_fault("latency")
            await asyncio.sleep(faults.latency)
        fault = faults.decide(route.op, f"{request.method} {request.path}")
        if fault is Fault.FAIL:
            stats.count_fault(fault.value)
            return web.Response(status=503, text="Service Unavailable", content_type="text/plain")
        if fault is Fault.DROP:
            stats.count_fault(fault.value)
            return drop(request)
        response = await handler(request)
        if route.op is Op.PLACEMENT and response.status < 300:
            stats.orders_placed += 1
        if fault is Fault.LOSE:
            stats.count_fault(fault.value)
            return drop(request)
        return response

    return middleware


def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (the client sees a disconnect)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


class HttpVenueServer(AppServer):
    """``handler`` serves the venue's API on every path but ``/_sim/...``, behind the fault layer.

    ``extra_routes`` adds the venue's own control routes (MT4's ``POST /_sim/price``), registered
    before the catch-all so they are served like the shared ones: never faulted, never counted.
    """

    def __init__(
        self, target: Controlled, handler: Handler, classify: Classify, *, extra_routes: ExtraRoutes | None = None
    ) -> None:
        app = web.Application(middlewares=[fault_middleware(target, classify)])
        add_control_routes(app.router, target)
        if extra_routes is not None:
            extra_routes(app.router)
        app.router.add_route("*", "/{tail:.*}", handler)
        super().__init__(app)
