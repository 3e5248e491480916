"""The TWS socket face of the simulated Interactive Brokers: sessions, client ids, who hears what.

``TwsSimulator`` listens like TWS / IB Gateway does (handshake at server version 176, then
``startApi``) in front of a ``TwsEngine`` (``engine.py``), behind the shared faults, stats and
``/_sim`` control endpoints of ``venues/common/``. IB's rules for sessions:

* A client id is one connection at a time: a second connection with an id already connected
  gets error 326 and is closed. Orders belong to the client id, not the connection, so a client
  that reconnects with its id sees its orders again and gets a ``nextValidId`` above every order
  id it ever used.
* Each client hears about its own orders only (openOrder, orderStatus, execDetails,
  commissionReport, errors). The master client id (TWS's "Master API client ID" setting, unset
  by default: ``master_client_id=None``) also hears every other client's orders, and its
  ``reqOpenOrders``, ``reqCompletedOrders`` and ``reqExecutions`` answer for every client.
  ``reqAllOpenOrders`` answers for every client whoever asks. Errors about an order (202 on a
  cancel, rejections) go only to the client that placed it. A client cancels only its own
  orders (``cancelOrder`` carries no client id), or everything with ``reqGlobalCancel``.
* Every connect-time request ib_async makes is answered with its End message.

Faults: ``fail_rate`` refuses connections (closed before the handshake); the one-shot counters
apply per message by name (``placeOrder``, ``reqExecutions`` ...; ``drop_next``/``fail_next``
close the connection unprocessed). ``lose_rate`` and a ``LOSE`` on ``placeOrder`` process the
order but withhold its acknowledgement (no openOrder/orderStatus, no rejection), while its later
events (fills, the final openOrder/orderStatus) are reported as usual; a ``LOSE`` on another
message processes it and closes the connection without an answer. ``restart(seconds)`` (``POST
/_sim/restart``) is the nightly restart: every connection dropped, the port closed, and the
orders keep working and filling on the price path meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from aiohttp import web

from venues.common.control import PREFIX, bad_request, json_body
from venues.common.faults import Fault, Faults, Op
from venues.common.prices import PricePath
from venues.common.stats import SimStats
from venues.common.tcp_server import TcpVenueServer
from venues.tws import messages as msg
from venues.tws.contracts import DEFAULT_INSTRUMENTS, Instrument
from venues.tws.engine import (
    DEFAULT_ACCOUNT,
    EngineEvent,
    Executed,
    OrderNotice,
    OrderOpened,
    QuoteMoved,
    StatusChanged,
    TwsEngine,
    TwsError,
)
from venues.tws.messages import IN
from venues.tws.orders import Order
from venues.tws.wire import (
    Field,
    Fields,
    ProtocolError,
    connection_time,
    encode,
    negotiate,
    read_handshake,
    read_message,
)

log = logging.getLogger(__name__)

#: what TWS says once a client is connected: informational, nothing to act on (ib_async logs them)
FARM_NOTICES: tuple[tuple[int, str], ...] = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
CLIENT_ID_IN_USE = "Unable to connect as the client id is already in use. Retry with a unique client id."
NO_SECURITY = "No security definition has been found for the request"
#: the size quoted at the touch and on the last trade, per security type
QUOTE_SIZE: dict[str, Decimal] = {"STK": Decimal(100), "OPT": Decimal(10), "FUT": Decimal(5),
                                  "CASH": Decimal(1_000_000)}


class _Close(enum.Enum):
    """A handler's answer: close the connection after what was sent."""

    CLOSE = "close"


class Session:
    """One client connection; ``client_id`` is None until ``startApi``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        #: (second, messages in it) for IB's message pacing
        self.pacing: tuple[int, int] = (0, 0)
        self.client_id: int | None = None
        self.positions_subscribed = False
        self.account_subscribed: str | None = None
        #: reqMktData streams: reqId -> instrument
        self.streams: dict[int, Instrument] = {}

    def send(self, fields: Sequence[Field]) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(fields))


Handler = Callable[[Session, list[str], bool], "_Close | None"]


class TwsSimulator:
    """A TWS / IB Gateway that ib_async connects to; ``start`` returns the bound port.

    ``tick_interval`` seconds between price steps (None: prices move only by ``set_price``,
    which tests use for deterministic fills). Engine knobs are passed through, or a ready
    ``engine`` is given.
    """

    def __init__(
        self,
        *,
        instruments: Sequence[Instrument] = DEFAULT_INSTRUMENTS,
        accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
        price_path: PricePath | None = None,
        partial_fill_steps: int = 1,
        spread_ticks: int = 1,
        starting_cash: Decimal = Decimal(1_000_000),
        master_client_id: int | None = None,
        first_perm_id: int | None = None,
        faults: Faults | None = None,
        tick_interval: float | None = 0.25,
        farm_notices: bool = True,
        clock: Callable[[], float] = time.time,
        engine: TwsEngine | None = None,
        max_messages_per_second: int | None = 50,
    ) -> None:
        self.engine = engine or TwsEngine(
            instruments=instruments, accounts=accounts, price_path=price_path,
            partial_fill_steps=partial_fill_steps, spread_ticks=spread_ticks, starting_cash=starting_cash,
            first_perm_id=first_perm_id, clock=clock,
        )
        self.faults = faults or Faults()
        self.stats = SimStats()
        self.master_client_id = master_client_id
        #: IB's pacing: a connection sending more placements than this in one second gets error 100
        #: ("Max rate of messages per second has been exceeded") for the placements beyond it,
        #: which are refused unprocessed (None: no limit)
        self.max_messages_per_second = max_messages_per_second
        self.tick_interval = tick_interval
        self.farm_notices = farm_notices
        self.host = "127.0.0.1"
        #: connected client ids -> their session
        self.sessions: dict[int, Session] = {}
        self._open: set[Session] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.server = TcpVenueServer(self, self._serve, extra_routes=self._add_routes)
        self.engine.subscribe(self._on_event)
        self._handlers: dict[int, tuple[str, Op, Handler]] = {
            IN.START_API: ("startApi", Op.TRADING, self._start_api),
            IN.PLACE_ORDER: ("placeOrder", Op.PLACEMENT, self._place_order),
            IN.CANCEL_ORDER: ("cancelOrder", Op.TRADING, self._cancel_order),
            IN.REQ_GLOBAL_CANCEL: ("reqGlobalCancel", Op.TRADING, self._global_cancel),
            IN.REQ_OPEN_ORDERS: ("reqOpenOrders", Op.TRADING, self._open_orders),
            IN.REQ_ALL_OPEN_ORDERS: ("reqAllOpenOrders", Op.TRADING, self._all_open_orders),
            IN.REQ_AUTO_OPEN_ORDERS: ("reqAutoOpenOrders", Op.TRADING, self._ignore),
            IN.REQ_COMPLETED_ORDERS: ("reqCompletedOrders", Op.TRADING, self._completed_orders),
            IN.REQ_EXECUTIONS: ("reqExecutions", Op.TRADING, self._executions),
            IN.REQ_POSITIONS: ("reqPositions", Op.TRADING, self._positions),
            IN.CANCEL_POSITIONS: ("cancelPositions", Op.TRADING, self._cancel_positions),
            IN.REQ_ACCOUNT_UPDATES: ("reqAccountUpdates", Op.TRADING, self._account_updates),
            IN.REQ_ACCOUNT_UPDATES_MULTI: ("reqAccountUpdatesMulti", Op.TRADING, self._account_updates_multi),
            IN.CANCEL_ACCOUNT_UPDATES_MULTI: ("cancelAccountUpdatesMulti", Op.TRADING, self._ignore),
            IN.REQ_ACCOUNT_SUMMARY: ("reqAccountSummary", Op.TRADING, self._account_summary),
            IN.CANCEL_ACCOUNT_SUMMARY: ("cancelAccountSummary", Op.TRADING, self._ignore),
            IN.REQ_MANAGED_ACCTS: ("reqManagedAccts", Op.TRADING, self._managed_accounts),
            IN.REQ_IDS: ("reqIds", Op.TRADING, self._req_ids),
            IN.REQ_CONTRACT_DETAILS: ("reqContractDetails", Op.MARKET_DATA, self._contract_details),
            IN.REQ_MKT_DATA: ("reqMktData", Op.MARKET_DATA, self._market_data),
            IN.CANCEL_MKT_DATA: ("cancelMktData", Op.MARKET_DATA, self._cancel_market_data),
            IN.REQ_MARKET_DATA_TYPE: ("reqMarketDataType", Op.MARKET_DATA, self._ignore),
            IN.REQ_CURRENT_TIME: ("reqCurrentTime", Op.MARKET_DATA, self._current_time),
        }

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def control_url(self) -> str:
        return self.server.control_url

    @property
    def connected_clients(self) -> list[int]:
        return sorted(self.sessions)

    async def start(self, host: str = "127.0.0.1", port: int = 0, control_port: int | None = None) -> int:
        """Listen (0: a free port) with the control endpoints on ``control_port`` (None: port + 1,
        or a free one when ``port`` is 0); starts the price ticker. Returns the bound port."""
        self.host = host
        bound = await self.server.start(host, port, control_port)
        if self.tick_interval:
            self._ticker = asyncio.create_task(self._tick_forever(self.tick_interval))
        return bound

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.server.stop()

    async def restart(self, seconds: float) -> int:
        """The nightly restart: drop every connection and refuse new ones for ``seconds`` while
        orders keep working; returns the number of connections dropped."""
        dropped = await self.server.pause(seconds)
        log.info("tws restart: %d connections dropped, listening again in %ss", dropped, seconds)
        return dropped

    def drop_connections(self) -> int:
        """Abort every client connection now (the listener stays open): a network cut."""
        sessions = list(self._open)
        for session in sessions:
            session.writer.transport.abort()
        return len(sessions)

    async def _tick_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.engine.tick()
            except Exception:  # a bug in matching must not stop the prices
                log.exception("tws simulator tick failed")

    # -- driving it from a test --------------------------------------------------------------------

    def set_price(self, key: str, price: Decimal | str | int, *, hold: bool = True) -> Decimal:
        """Move an instrument (by key: SPY, ESZ6, EURUSD ...) and fill what that crosses, now."""
        return self.engine.set_price(key, Decimal(price), hold=hold)

    def release(self, key: str) -> None:
        self.engine.release(key)

    def notify(self, code: int, message: str, *, req_id: int = -1, client_id: int | None = None) -> int:
        """Send an error message (e.g. 1100 connectivity lost, 2104, 10349) to one connected client
        or to all; returns how many received it."""
        targets = list(self.sessions.values()) if client_id is None else \
            [s for cid, s in self.sessions.items() if cid == client_id]
        for session in targets:
            self._error(session, req_id, code, message)
        return len(targets)

    # -- connections -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            low, high, _options = await read_handshake(reader)
        except ProtocolError as exc:
            log.info("tws: bad handshake: %s", exc)
            return
        version = negotiate(low, high)
        if version is None:
            log.info("tws: client offers v%s..%s, this simulator speaks only 176", low, high)
            return
        writer.write(encode([version, connection_time(datetime.now(UTC))]))
        session = Session(writer)
        self._open.add(session)
        try:
            while True:
                try:
                    fields = await read_message(reader)
                except ProtocolError as exc:
                    log.info("tws: closing a connection that broke the protocol: %s", exc)
                    return
                if not fields:
                    continue
                if await self._receive(session, fields) is _Close.CLOSE:
                    await _close(writer)
                    return
                await writer.drain()
        finally:
            self._open.discard(session)
            if session.client_id is not None and self.sessions.get(session.client_id) is session:
                del self.sessions[session.client_id]

    async def _receive(self, session: Session, fields: list[str]) -> _Close | None:
        try:
            msg_id = int(fields[0])
        except ValueError:
            raise ProtocolError(f"message id {fields[0]!r}") from None
        known = self._handlers.get(msg_id)
        name, op, handler = known if known is not None else (f"msg{msg_id}", Op.TRADING, self._ignore)
        fault = await self.server.admit(op, name, use_fail_rate=False)
        if fault in (Fault.FAIL, Fault.DROP):
            session.writer.transport.abort()
            return _Close.CLOSE
        if session.client_id is None and msg_id != IN.START_API:
            log.info("tws: %s before startApi ignored", name)
            return None
        lost = fault is Fault.LOSE
        try:
            result = handler(session, fields, lost)
        except (ProtocolError, IndexError, ValueError, ArithmeticError) as exc:
            log.info("tws: malformed %s: %s", name, exc)
            return _Close.CLOSE
        if lost and op is not Op.PLACEMENT:
            return _Close.CLOSE
        return result

    def _error(self, session: Session, req_id: int, code: int, message: str) -> None:
        self.stats.count_error(code)
        session.send(msg.error(req_id, code, message))

    def _owner(self, order: Order) -> Session | None:
        return self.sessions.get(order.client_id)

    def _recipients(self, order: Order) -> list[Session]:
        """The placing client and the master client, where connected."""
        ids = [order.client_id]
        if self.master_client_id is not None and self.master_client_id != order.client_id:
            ids.append(self.master_client_id)
        return [self.sessions[cid] for cid in ids if cid in self.sessions]

    def _sees_all(self, session: Session) -> bool:
        return self.master_client_id is not None and session.client_id == self.master_client_id

    def _scope(self, session: Session) -> int | None:
        """Whose orders a request from this session answers for: None for the master (everyone)."""
        return None if self._sees_all(session) else session.client_id

    # -- engine events -> messages ------------------------------------------------------------------

    def _on_event(self, event: EngineEvent) -> None:
        if isinstance(event, OrderOpened):
            for session in self._recipients(event.order):
                session.send(msg.open_order(event.order))
                session.send(msg.order_status(event.order))
        elif isinstance(event, StatusChanged):
            for session in self._recipients(event.order):
                session.send(msg.order_status(event.order))
        elif isinstance(event, Executed):
            for session in self._recipients(event.order):
                session.send(msg.exec_details(-1, event.execution))
                session.send(msg.commission_report(event.execution))
            self._push_portfolio(event)
        elif isinstance(event, OrderNotice):
            owner = self._owner(event.order)
            if owner is not None:
                self._error(owner, event.order.order_id, event.code, event.message)
        elif isinstance(event, QuoteMoved):
            for session in list(self._open):
                for req_id, inst in session.streams.items():
                    if inst is event.instrument:
                        self._send_quote(session, req_id, inst)

    def _push_portfolio(self, event: Executed) -> None:
        account = event.execution.account
        pos = self.engine.positions.get((account, event.execution.instrument.con_id))
        for session in list(self._open):
            if pos is not None and session.positions_subscribed:
                session.send(msg.position(pos))
            if session.account_subscribed == account:
                if pos is not None:
                    session.send(msg.portfolio_value(pos, self.engine.last(pos.instrument)))
                for tag, value, ccy in self.engine.account_values(account):
                    session.send(msg.account_value(tag, value, ccy, account))

    def _send_quote(self, session: Session, req_id: int, inst: Instrument) -> None:
        bid, ask, last = self.engine.quote(inst)
        size = QUOTE_SIZE.get(inst.sec_type, Decimal(100))
        session.send(msg.tick_price(req_id, msg.BID, bid, size))
        session.send(msg.tick_price(req_id, msg.ASK, ask, size))
        session.send(msg.tick_price(req_id, msg.LAST, last, size))

    # -- requests --------------------------------------------------------------------------------------

    def _ignore(self, session: Session, fields: list[str], lost: bool) -> None:
        return None

    def _start_api(self, session: Session, fields: list[str], lost: bool) -> _Close | None:
        if session.client_id is not None:
            return None
        client_id = Fields(fields, 2).integer()
        if client_id in self.sessions:
            self._error(session, -1, 326, CLIENT_ID_IN_USE)
            return _Close.CLOSE
        session.client_id = client_id
        self.sessions[client_id] = session
        session.send(msg.managed_accounts(self.engine.accounts))
        session.send(msg.next_valid_id(self.engine.next_valid_id(client_id)))
        if self.farm_notices:
            for code, text in FARM_NOTICES:
                self._error(session, -1, code, text)
        return None

    def _client(self, session: Session) -> int:
        assert session.client_id is not None
        return session.client_id

    def _paced_out(self, session: Session) -> bool:
        """Count one message against the connection's per-second budget; True when over it."""
        if self.max_messages_per_second is None:
            return False
        second = int(time.monotonic())
        start, count = session.pacing
        count = count + 1 if start == second else 1
        session.pacing = (second, count)
        return count > self.max_messages_per_second

    def _place_order(self, session: Session, fields: list[str], lost: bool) -> None:
        msg.require(fields, 30, "placeOrder")
        placed = msg.parse_place_order(fields)
        order_id = placed.request.order_id
        client_id = self._client(session)
        if self._paced_out(session):
            self.stats.throttled += 1
            limit = self.max_messages_per_second or 0
            self._error(session, order_id, 100,
                        f"Max rate of messages per second has been exceeded:max={limit} rec={limit + 1} (1)")
            return
        try:
            if placed.is_combo:
                raise TwsError(201, "Order rejected - reason:combination orders are not supported by the simulator")
            is_new = (client_id, order_id) not in self.engine.orders
            self.engine.place(client_id, placed.query, placed.request, ack=not lost)
        except TwsError as exc:
            if not lost:
                self._error(session, order_id, exc.code, exc.message)
            return
        if is_new:
            self.stats.orders_placed += 1

    def _cancel_order(self, session: Session, fields: list[str], lost: bool) -> None:
        order_id = Fields(fields, 2).integer()
        try:
            self.engine.cancel(self._client(session), order_id)
        except TwsError as exc:
            self._error(session, order_id, exc.code, exc.message)

    def _global_cancel(self, session: Session, fields: list[str], lost: bool) -> None:
        self.engine.global_cancel()

    def _send_open(self, session: Session, orders: Sequence[Order]) -> None:
        for order in orders:
            session.send(msg.open_order(order))
            session.send(msg.order_status(order))
        session.send(msg.open_order_end())

    def _open_orders(self, session: Session, fields: list[str], lost: bool) -> None:
        self._send_open(session, self.engine.open_orders(self._scope(session)))

    def _all_open_orders(self, session: Session, fields: list[str], lost: bool) -> None:
        self._send_open(session, self.engine.open_orders(None))

    def _completed_orders(self, session: Session, fields: list[str], lost: bool) -> None:
        for order in self.engine.completed_orders(self._scope(session)):
            session.send(msg.completed_order(order))
        session.send(msg.completed_orders_end())

    def _executions(self, session: Session, fields: list[str], lost: bool) -> None:
        req_id, flt = msg.parse_exec_filter(fields)
        for execution in self.engine.executions_for(flt, self._scope(session)):
            session.send(msg.exec_details(req_id, execution))
            session.send(msg.commission_report(execution))
        session.send(msg.exec_details_end(req_id))

    def _positions(self, session: Session, fields: list[str], lost: bool) -> None:
        session.positions_subscribed = True
        for pos in self.engine.account_positions():
            session.send(msg.position(pos))
        session.send(msg.position_end())

    def _cancel_positions(self, session: Session, fields: list[str], lost: bool) -> None:
        session.positions_subscribed = False

    def _account_updates(self, session: Session, fields: list[str], lost: bool) -> None:
        f = Fields(fields, 2)
        subscribe = f.flag()
        account = f.text() or self.engine.accounts[0]
        if not subscribe:
            session.account_subscribed = None
            return
        session.account_subscribed = account
        for tag, value, ccy in self.engine.account_values(account):
            session.send(msg.account_value(tag, value, ccy, account))
        for pos in self.engine.account_positions(account):
            session.send(msg.portfolio_value(pos, self.engine.last(pos.instrument)))
        session.send(msg.account_update_time(datetime.now(UTC).strftime("%H:%M")))
        session.send(msg.account_download_end(account))

    def _accounts_named(self, name: str) -> list[str]:
        if not name or name.upper() == "ALL":
            return list(self.engine.accounts)
        return [a for a in self.engine.accounts if a == name]

    def _account_updates_multi(self, session: Session, fields: list[str], lost: bool) -> None:
        f = Fields(fields, 2)
        req_id = f.integer()
        for account in self._accounts_named(f.text()):
            for tag, value, ccy in self.engine.account_values(account):
                session.send(msg.account_update_multi(req_id, account, tag, value, ccy))
        session.send(msg.account_update_multi_end(req_id))

    def _account_summary(self, session: Session, fields: list[str], lost: bool) -> None:
        f = Fields(fields, 2)
        req_id = f.integer()
        f.skip(1)  # group
        tags = {t.strip() for t in f.text().split(",") if t.strip()}
        for account in self.engine.accounts:
            for tag, value, ccy in self.engine.account_values(account):
                if tag in tags and ccy != "BASE":
                    session.send(msg.account_summary(req_id, account, tag, value, ccy))
        session.send(msg.account_summary_end(req_id))

    def _managed_accounts(self, session: Session, fields: list[str], lost: bool) -> None:
        session.send(msg.managed_accounts(self.engine.accounts))

    def _req_ids(self, session: Session, fields: list[str], lost: bool) -> None:
        session.send(msg.next_valid_id(self.engine.next_valid_id(self._client(session))))

    def _current_time(self, session: Session, fields: list[str], lost: bool) -> None:
        session.send(msg.current_time(int(self.engine.now())))

    def _contract_details(self, session: Session, fields: list[str], lost: bool) -> None:
        msg.require(fields, 15, "reqContractDetails")
        req_id, query = msg.parse_contract_details(fields)
        found = self.engine.resolve(query)
        if not found:
            self._error(session, req_id, 200, NO_SECURITY)
            return
        wanted = query.get("exchange", "").upper()
        for inst in found:
            exchange = wanted if wanted in inst.exchanges else inst.listing_exchange
            session.send(msg.contract_details(req_id, inst, exchange))
        session.send(msg.contract_details_end(req_id))

    def _market_data(self, session: Session, fields: list[str], lost: bool) -> None:
        msg.require(fields, 15, "reqMktData")
        request = msg.parse_market_data(fields)
        found = [] if request.is_combo else self.engine.resolve(request.query)
        if len(found) != 1:
            self._error(session, request.req_id, 200, NO_SECURITY)
            return
        inst = found[0]
        self._send_quote(session, request.req_id, inst)
        if request.snapshot:
            session.send(msg.tick_snapshot_end(request.req_id))
        else:
            session.streams[request.req_id] = inst

    def _cancel_market_data(self, session: Session, fields: list[str], lost: bool) -> None:
        session.streams.pop(Fields(fields, 2).integer(), None)

    # -- control endpoints ---------------------------------------------------------------------------

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post(f"{PREFIX}/restart", self._http_restart)
        router.add_get(f"{PREFIX}/tws", self._http_state)
        router.add_post(f"{PREFIX}/price", self._http_price)
        router.add_post(f"{PREFIX}/notice", self._http_notice)

    async def _http_restart(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        seconds = body.get("seconds", 5)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 3600:
            return bad_request(f"seconds must be a number between 0 and 3600, got {seconds!r}")
        dropped = await self.restart(float(seconds))
        return web.json_response({"seconds": seconds, "dropped_connections": dropped})

    async def _http_state(self, _request: web.Request) -> web.Response:
        engine = self.engine
        return web.json_response({
            "listening": self.server.listening,
            "clients": self.connected_clients,
            "master_client_id": self.master_client_id,
            "accounts": list(engine.accounts),
            "open_orders": len(engine.open_orders()),
            "executions": len(engine.executions),
            "prices": {key: str(engine.last(inst)) for key, inst in engine.instruments.items()},
            "con_ids": {key: inst.con_id for key, inst in engine.instruments.items()},
        })

    async def _http_price(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        key, price = body.get("key"), body.get("price")
        if not isinstance(key, str) or key not in self.engine.instruments:
            return bad_request(f"key must be one of {sorted(self.engine.instruments)}, got {key!r}")
        try:
            value = Decimal(str(price))
        except ArithmeticError:
            return bad_request(f"price must be a decimal, got {price!r}")
        if not value.is_finite() or value <= 0:
            return bad_request(f"price must be positive, got {price!r}")
        now = self.set_price(key, value, hold=bool(body.get("hold", True)))
        return web.json_response({"key": key, "price": str(now)})

    async def _http_notice(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        code, text = body.get("code"), body.get("message", "")
        req_id, client_id = body.get("req_id", -1), body.get("client_id")
        if isinstance(code, bool) or not isinstance(code, int) or not isinstance(text, str) \
                or not isinstance(req_id, int) or (client_id is not None and not isinstance(client_id, int)):
            return bad_request("expected {code: int, message: str, req_id?: int, client_id?: int}")
        return web.json_response({"sent_to": self.notify(code, text, req_id=req_id, client_id=client_id)})


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after what was written has gone out (the 326 error reaches the client first)."""
    if writer.is_closing():
        return
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()
