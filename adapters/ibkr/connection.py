"""The connection to TWS / IB Gateway: client id, connect, lose, reconnect, resynchronise.

One ``ib_async.IB`` per adapter. What this layer guarantees to the adapter above it:

* **A distinct client id per process.** IB refuses a second connection with a client id that
  is already connected (error 326). The master client id (``IBKR_MASTER_CLIENT_ID``) is tried
  first when configured, then ``client_id``, ``client_id + 1``... up to the span: scaled-out
  executors sort themselves out without a registry.
* **The state is the socket's, not a guess.** ``state`` is ``connected`` only between a
  completed handshake + synchronisation and the socket's loss (``disconnectedEvent``), and
  ``degraded`` while IB reports its own link down (error 1100, until 1101/1102).
* **Reconnect forever, with backoff** (``IBKR_RECONNECT_BACKOFF``): the nightly restart of the
  gateway (the seed's 11:59 PM) is routine. After every (re)connect, ``on_connected`` callbacks
  run: ib_async has just re-read open orders, completed orders and executions (its connect-time
  synchronisation), and the adapter pushes what changed while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from adapters.ibkr.config import IbkrConfig
from adapters.ibkr.parsing import (
    CLIENT_ID_IN_USE,
    CONNECTION_LOST,
    CONNECTION_RESTORED,
    CONNECTION_RESTORED_DATA_LOST,
)
from execution.clock import SYSTEM_CLOCK, Clock
from execution.tasks import stop_task

log = logging.getLogger(__name__)

ConnectionState = Literal["disconnected", "connecting", "connected", "degraded", "closed"]


class ClientIdsExhausted(ConnectionError):
    """Every client id this process may use is connected elsewhere (error 326 on each)."""


class IbkrConnection:
    def __init__(
        self,
        config: IbkrConfig,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        ib: Any | None = None,
    ) -> None:
        from ib_async import IB

        self.config = config
        self._clock = clock
        self._rng = rng or random.Random()
        self.ib: Any = ib or IB()
        # a failed request raises RequestError(code, message) instead of returning nothing, so an
        # unknown contract is IB's error 200 with IB's words, not an empty list
        self.ib.RaiseRequestErrors = True
        self.state: ConnectionState = "disconnected"
        #: why the state is what it is (last error, refused id, ...), shown by health and logs
        self.reason = "not connected yet"
        self.client_id: int | None = None
        self.connects = 0
        self._on_connected: list[Callable[[], Awaitable[None]]] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Future[None] | None = None
        #: resolved when IB refuses the client id being connected (326)
        self._refusal: asyncio.Future[None] | None = None
        self._refused_ids: set[int] = set()
        self._connected = asyncio.Event()
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.errorEvent += self._on_error

    # -- public -----------------------------------------------------------------------------------

    @property
    def is_master(self) -> bool:
        return self.client_id is not None and self.client_id == self.config.master_client_id

    @property
    def usable(self) -> bool:
        return self.state == "connected" and self.ib.isConnected()

    def on_connected(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_connected.append(callback)

    async def start(self) -> None:
        """Connect once (bounded by ``connect_timeout``); if that fails, keep trying in the
        background. Never raises: an executor starts while the gateway is down and its orders
        follow ``IBKR_DISCONNECTED_POLICY`` meanwhile."""
        if self.state == "closed":
            self.state = "disconnected"
        if not await self._connect_once():
            self._ensure_supervisor()

    async def reconnect_now(self, timeout: float) -> bool:
        """Someone needs IB now (a lookup): try at once instead of waiting out the backoff,
        for at most ``timeout`` seconds. True if connected."""
        if self.usable:
            return True
        if self._closed():
            return False
        if self.state != "connecting":
            if self._supervisor is not None and not self._supervisor.done():
                self._supervisor.cancel()
            self._supervisor = asyncio.create_task(self._connect_then_supervise(), name="ibkr-reconnect")
        return await self.wait_connected(timeout)

    async def _connect_then_supervise(self) -> None:
        if not await self._connect_once():
            self._supervisor = None
            self._ensure_supervisor()

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.usable

    async def close(self) -> None:
        self.state = "closed"
        self.reason = "closed"
        await stop_task(self._supervisor)
        self._supervisor = None
        self._connected.clear()
        if self.ib.isConnected():
            self.ib.disconnect()

    # -- connecting -------------------------------------------------------------------------------

    def _candidate_ids(self) -> list[int]:
        span = range(self.config.client_id, self.config.client_id + max(1, self.config.client_id_span))
        ids = [self.config.master_client_id] if self.config.master_client_id is not None else []
        return [*ids, *(i for i in span if i not in ids)]

    async def _connect_once(self) -> bool:
        self.state = "connecting"
        self._refused_ids.clear()
        last: BaseException | None = None
        for client_id in self._candidate_ids():
            try:
                await self._connect_as(client_id)
            except (OSError, TimeoutError, ConnectionError) as exc:
                last = exc
                if client_id in self._refused_ids:
                    log.info("IBKR client id %d is connected elsewhere (326); trying the next", client_id)
                    continue
                break  # the gateway itself is unreachable: no point trying other ids now
            if self._closed():  # closed while connecting
                self.ib.disconnect()
                return False
            self.client_id = client_id
            self.state = "connected"
            self.reason = f"connected as client {client_id}" + (" (master)" if self.is_master else "")
            self.connects += 1
            log.info("IBKR %s:%s %s", self.config.host, self.config.port, self.reason)
            self._connected.set()
            await self._run_callbacks()
            return True
        if self._refused_ids and len(self._refused_ids) == len(self._candidate_ids()):
            self.reason = f"every client id is in use (326): {sorted(self._refused_ids)}"
        else:
            self.reason = f"cannot connect to {self.config.host}:{self.config.port}: {last!r}"
        if not self._closed():
            self.state = "disconnected"
        log.warning("IBKR %s", self.reason)
        return False

    async def _connect_as(self, client_id: int) -> None:
        """``connectAsync`` with ``client_id``, failing at once on error 326 (ib_async itself
        would wait out the whole connect timeout once IB closed the socket)."""
        refused = asyncio.get_running_loop().create_future()
        self._refusal = refused
        connecting = asyncio.ensure_future(self.ib.connectAsync(
            self.config.host, self.config.port, clientId=client_id, timeout=self.config.connect_timeout,
            account=self.config.account.get_secret_value()))
        try:
            await asyncio.wait({connecting, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._refusal = None
        if not connecting.done():
            connecting.cancel()
            # waited with asyncio.wait, which raises nothing of the attempt's own (its
            # cancellation included) but does raise this task's: a close() cancelling the
            # supervisor here is not swallowed
            await asyncio.wait({connecting})
            if not connecting.cancelled():
                connecting.exception()  # retrieved: the refusal is what is reported
            self.ib.disconnect()
            raise ConnectionError(f"client id {client_id} is in use (IB 326)")
        connecting.result()

    def _closed(self) -> bool:
        return self.state == "closed"

    def _ensure_supervisor(self) -> None:
        if self.state == "closed":
            return
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._reconnect_forever(), name="ibkr-reconnect")

    async def _reconnect_forever(self) -> None:
        backoff = self.config.reconnect_backoff
        attempt = 0
        while self.state not in ("closed", "connected"):
            attempt += 1
            await asyncio.sleep(backoff.delay(min(attempt, 30), self._rng))
            if self.state == "closed":
                return
            if await self._connect_once():
                return

    # -- events -----------------------------------------------------------------------------------

    def _on_disconnected(self) -> None:
        self._connected.clear()
        if self.state == "closed":
            return
        if self.state in ("connected", "degraded"):
            log.warning("IBKR connection lost (client %s); reconnecting", self.client_id)
            self.reason = "connection lost; reconnecting"
            self.state = "disconnected"
            self._ensure_supervisor()

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if code == CLIENT_ID_IN_USE:
            self._refused_ids.add(self.ib.client.clientId)
            if self._refusal is not None and not self._refusal.done():
                self._refusal.set_result(None)
        elif code == CONNECTION_LOST and self.state == "connected":
            self.state = "degraded"
            self.reason = f"IB {code}: {message}"
        elif code in (CONNECTION_RESTORED, CONNECTION_RESTORED_DATA_LOST) and self.state == "degraded":
            self.state = "connected"
            self.reason = f"IB {code}: {message}"
            if code == CONNECTION_RESTORED_DATA_LOST:  # IB says updates were lost: resynchronise
                self._resync_task = asyncio.ensure_future(self._run_callbacks())

    async def _run_callbacks(self) -> None:
        for callback in self._on_connected:
            try:
                await callback()
            except Exception:
                log.exception("IBKR resynchronisation failed")
