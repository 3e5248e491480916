"""A TCP venue's server (TWS API, socket bridges): connections behind the shared faults, plus
the ``/_sim`` control endpoints over HTTP on a port of their own.

Faults reach a TCP venue at two points. Each new connection is admitted with ``Op.CONNECT``:
latency delays it, and a failed draw (``fail_rate``, ``fail_next``, ``drop_next``) closes it at
once, before a byte is read: to the client, a refused or reset connection. Inside the protocol
the venue calls ``admit(op, name)`` for each request message and acts on the answer: ``FAIL`` and
``DROP`` close the connection unprocessed, ``LOSE`` processes the message (an order placed) and
then closes without answering (a venue may define its own answer to ``LOSE``: TWS keeps the
connection and withholds only the acknowledgement). The venue counts ``stats.orders_placed``
itself, since only it knows a message placed an order.

``pause(seconds)`` is a gateway restart: every connection is dropped and the listener is closed
(new connections are refused) for that long, then it listens on the same port again; the venue's
state and its control endpoints stay up throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from venues.common.control import Controlled, ControlServer, ExtraRoutes
from venues.common.faults import Fault, Op

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CONNECT = "CONNECT"


def default_control_port(port: int) -> int:
    """The venue's port + 1; a venue on a free port (0) gets a free control port too."""
    return port + 1 if port else 0


class TcpVenueServer:
    """Serves ``handle(reader, writer)`` per admitted connection; ``start`` returns the bound port."""

    def __init__(
        self, target: Controlled, handle: ConnectionHandler, *, extra_routes: ExtraRoutes | None = None
    ) -> None:
        self._target = target
        self._handle = handle
        self._server: asyncio.Server | None = None
        self._control = ControlServer(target, extra_routes)
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._reopen: asyncio.Task[None] | None = None
        self._host = "127.0.0.1"
        self.port = 0
        self.control_url = ""

    @property
    def listening(self) -> bool:
        """False while stopped or paused (a restart in progress)."""
        return self._server is not None

    async def start(self, host: str = "127.0.0.1", port: int = 0, control_port: int | None = None) -> int:
        self._host = host
        self._server = await asyncio.start_server(self._on_connect, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        wanted = default_control_port(port) if control_port is None else control_port
        self.control_url = await self._control.start(host, wanted)
        log.info("tcp venue on %s:%s, control %s", host, self.port, self.control_url)
        return self.port

    async def stop(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopen
            self._reopen = None
        await self._close_listener()
        await self._control.stop()

    async def pause(self, seconds: float) -> int:
        """Drop every connection and refuse new ones for ``seconds``; returns the connections dropped.

        Returns once the listener is closed; listening on the same port resumes in the background.
        A pause during a pause restarts the countdown.
        """
        if self._reopen is not None:
            self._reopen.cancel()
        dropped = len(self._connections)
        await self._close_listener()
        self._reopen = asyncio.create_task(self._listen_again(seconds))
        return dropped

    async def _listen_again(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        try:
            self._server = await asyncio.start_server(self._on_connect, self._host, self.port)
        except OSError:
            log.exception("tcp venue could not listen again on %s:%s", self._host, self.port)
            raise
        finally:
            self._reopen = None
        log.info("tcp venue listening again on %s:%s", self._host, self.port)

    async def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in self._connections.values():
            writer.transport.abort()
        tasks = list(self._connections)
        if tasks:
            # an aborted connection ends its handler by itself; cancel only what does not (a
            # cancelled handler task makes Python 3.11's streams log a spurious error)
            _done, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if server is not None:
            await server.wait_closed()

    async def admit(self, op: Op, name: str, *, use_fail_rate: bool = True) -> Fault:
        """Count one request (or connection), apply latency, and return its fault (counted).

        ``use_fail_rate=False``: ``fail_rate`` does not apply to this request (see ``Faults.decide``).
        """
        stats = self._target.stats
        stats.count_request(name)
        faults = self._target.faults
        if faults.latency > 0:
            stats.count_fault("latency")
            await asyncio.sleep(faults.latency)
        fault = faults.decide(op, name, use_fail_rate=use_fail_rate)
        if fault is not Fault.NONE:
            stats.count_fault(fault.value)
        return fault

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            if await self.admit(Op.CONNECT, CONNECT) is not Fault.NONE:
                writer.transport.abort()
                return
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
