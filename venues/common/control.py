"""The ``/_sim`` control endpoints every simulator serves, so a drill can steer it from outside.

* ``GET /_sim/faults``: the fault settings (``venues/common/faults.py``) as JSON;
* ``POST /_sim/faults``: a JSON object of the settings to change, e.g.
  ``{"latency": 0.2, "fail_rate": 0.1, "lose_rate": 0.05}``; keys left out keep their value,
  the one-shot counters (``fail_next``, ``drop_next``, ``lose_response_next``, ``match``) and
  ``seed`` are accepted too; answers the new settings, or 400 with ``{"error": ...}``;
* ``GET /_sim/stats``: the counters (``venues/common/stats.py``).

An HTTP venue adds them to its own app (same port); a TCP venue serves them on its control port
(``ControlServer``). They are never faulted and never counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from venues.common.faults import Faults
from venues.common.stats import SimStats

PREFIX = "/_sim"


class Controlled(Protocol):
    """A simulator the control endpoints can steer: they read these attributes on every call,
    so a test that replaces ``faults`` with a new object is seen at once."""

    faults: Faults
    stats: SimStats


def is_control_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


async def json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """A control request's JSON object body (empty = ``{}``), or the 400 answer saying why not.
    Every ``/_sim`` endpoint of every simulator reads its body through this."""
    try:
        body = json.loads(await request.text() or "{}")
    except ValueError as exc:
        return bad_request(f"body is not JSON: {exc}")
    if not isinstance(body, dict):
        return bad_request("body must be a JSON object")
    return body


def bad_request(message: str) -> web.Response:
    """The 400 answer of a control endpoint: ``{"error": message}``."""
    return web.json_response({"error": message}, status=400)


def add_control_routes(router: web.UrlDispatcher, target: Controlled) -> None:
    """Register the ``/_sim`` routes; call before any catch-all route of the venue."""

    async def get_faults(_request: web.Request) -> web.Response:
        return web.json_response(target.faults.to_json())

    async def post_faults(request: web.Request) -> web.Response:
        patch = await json_body(request)
        if isinstance(patch, web.Response):
            return patch
        try:
            target.faults.update(patch)
        except ValueError as exc:
            return bad_request(str(exc))
        return web.json_response(target.faults.to_json())

    async def get_stats(_request: web.Request) -> web.Response:
        return web.json_response(target.stats.to_json())

    router.add_get(f"{PREFIX}/faults", get_faults)
    router.add_post(f"{PREFIX}/faults", post_faults)
    router.add_get(f"{PREFIX}/stats", get_stats)


class AppServer:
    """One aiohttp application on ``host:port`` (0 picks a free port), started and stopped."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0]
        self.url = f"http://{host}:{bound[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


#: adds a venue's own control routes (e.g. TWS's ``POST /_sim/restart``) to the control app
ExtraRoutes = Callable[[web.UrlDispatcher], None]


class ControlServer(AppServer):
    """The control endpoints alone, for a venue that does not speak HTTP (TWS, raw TCP bridges)."""

    def __init__(self, target: Controlled, extra_routes: ExtraRoutes | None = None) -> None:
        app = web.Application()
        add_control_routes(app.router, target)
        if extra_routes is not None:
            extra_routes(app.router)
        super().__init__(app)
