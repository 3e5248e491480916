"""A TCP venue's server (TWS API, socket bridges): connections behind the shared faults, plus
the ``/_sim`` control endpoints over HTTP on a port of their own.

Faults reach a TCP venue at two points. Each new connection is admitted with ``Op.CONNECT``:
latency delays it, and a failed draw (``fail_rate``, ``fail_next``, ``drop_next``) closes it at
once, before a byte is read: to the client, a refused or reset connection. Inside the protocol
the venue calls ``admit(op, name)`` for each request message and acts on the answer: ``FAIL`` and
``DROP`` close the connection unprocessed, ``LOSE`` processes the message (an order placed) and
then closes without answering. The venue counts ``stats.orders_placed`` itself, since only it
knows a message placed an order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from venues.common.control import Controlled, ControlServer
from venues.common.faults import Fault, Op

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CONNECT = "CONNECT"


def default_control_port(port: int) -> int:
    """The venue's port + 1; a venue on a free port (0) gets a free control port too."""
    return port + 1 if port else 0


class TcpVenueServer:
    """Serves ``handle(reader, writer)`` per admitted connection; ``start`` returns the bound port."""

    def __init__(self, target: Controlled, handle: ConnectionHandler) -> None:
        self._target = target
        self._handle = handle
        self._server: asyncio.Server | None = None
        self._control = ControlServer(target)
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0
        self.control_url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0, control_port: int | None = None) -> int:
        self._server = await asyncio.start_server(self._on_connect, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        wanted = default_control_port(port) if control_port is None else control_port
        self.control_url = await self._control.start(host, wanted)
        log.info("tcp venue on %s:%s, control %s", host, self.port, self.control_url)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            for task in list(self._connections):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._server.wait_closed()
            self._server = None
        await self._control.stop()

    async def admit(self, op: Op, name: str) -> Fault:
        """Count one request (or connection), apply latency, and return its fault (counted)."""
        stats = self._target.stats
        stats.count_request(name)
        faults = self._target.faults
        if faults.latency > 0:
            stats.count_fault("latency")
            await asyncio.sleep(faults.latency)
        fault = faults.decide(op, name)
        if fault is not Fault.NONE:
            stats.count_fault(fault.value)
        return fault

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if await self.admit(Op.CONNECT, CONNECT) is not Fault.NONE:
                writer.transport.abort()
                return
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
