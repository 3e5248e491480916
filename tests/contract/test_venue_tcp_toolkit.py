"""The toolkit's TCP side (what the TWS and MT4 simulators will stand on), over real sockets:
a toy line-protocol venue gets the shared faults per connection and per message, and its
``/_sim`` control endpoints on a port of their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from tests.fixtures.binance import free_port
from venues.common import Fault, Faults, Op, SimStats, TcpVenueServer


class LineVenue:
    """``PING`` -> ``PONG``; ``ORDER id`` places an order and answers ``ACK id``."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.stats = SimStats()
        self.orders: list[str] = []
        self.server = TcpVenueServer(self, self.handle)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            command, _, arg = line.decode().strip().partition(" ")
            fault = await self.server.admit(Op.PLACEMENT if command == "ORDER" else Op.MARKET_DATA, command)
            if fault in (Fault.FAIL, Fault.DROP):
                return
            if command == "ORDER":
                self.orders.append(arg)
                self.stats.orders_placed += 1
                answer = f"ACK {arg}"
            else:
                answer = "PONG"
            if fault is Fault.LOSE:
                return
            writer.write(answer.encode() + b"\n")
            await writer.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def venue() -> AsyncIterator[LineVenue]:
    v = LineVenue()
    await v.server.start()
    yield v
    await v.server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ask(venue: LineVenue, *lines: str) -> list[str]:
    """Send each line on one connection; the answers until the venue closes or all came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", venue.server.port)
    answers: list[str] = []
    try:
        for line in lines:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.readline(), timeout=2)
            except ConnectionError:
                break
            if not answer:
                break
            answers.append(answer.decode().strip())
    finally:
        writer.close()
    return answers


async def control(http: aiohttp.ClientSession, venue: LineVenue, path: str, body: Any = None) -> Any:
    url = f"{venue.server.control_url}/_sim/{path}"
    async with (http.post(url, json=body) if body is not None else http.get(url)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_connections_and_messages_are_counted(http, venue):
    assert await ask(venue, "PING", "ORDER o-1") == ["PONG", "ACK o-1"]
    stats = await control(http, venue, "stats")
    assert stats["by_endpoint"] == {"CONNECT": 1, "PING": 1, "ORDER": 1}
    assert stats["orders_placed"] == 1 and stats["faults_injected"] == 0


async def test_fail_rate_refuses_connections_until_lifted_over_the_control_port(http, venue):
    await control(http, venue, "faults", {"fail_rate": 1})
    assert await ask(venue, "PING") == []  # closed before a byte was read
    assert venue.stats.by_endpoint == {"CONNECT": 1}  # the message never reached the venue
    await control(http, venue, "faults", {"fail_rate": 0})
    assert await ask(venue, "PING") == ["PONG"]
    assert (await control(http, venue, "stats"))["faults"]["fail"] == 1


async def test_lose_rate_places_the_order_and_closes_without_an_answer(http, venue):
    await control(http, venue, "faults", {"lose_rate": 1})
    assert await ask(venue, "PING", "ORDER o-2", "PING") == ["PONG"]
    assert venue.orders == ["o-2"]  # the venue has it; the client never heard
    assert await ask(venue, "PING") == ["PONG"]  # connections and reads are not lost
    stats = await control(http, venue, "stats")
    assert stats["faults"]["lose"] == 1 and stats["orders_placed"] == 1


async def test_one_shot_counters_match_a_message_name(http, venue):
    await control(http, venue, "faults", {"drop_next": 1, "match": "ORDER"})
    assert await ask(venue, "PING", "ORDER o-3") == ["PONG"]
    assert venue.orders == []
    assert await ask(venue, "ORDER o-4") == ["ACK o-4"]


async def test_latency_delays_connections_and_messages(venue):
    venue.faults.latency = 0.1
    started = asyncio.get_running_loop().time()
    assert await ask(venue, "PING") == ["PONG"]
    assert asyncio.get_running_loop().time() - started >= 0.2  # the connection, then the message
    assert venue.stats.faults["latency"] == 2


async def test_control_port_can_be_chosen():
    v = LineVenue()
    port = free_port()
    await v.server.start(control_port=port)
    try:
        assert v.server.control_url == f"http://127.0.0.1:{port}"
        assert await ask(v, "PING") == ["PONG"]
    finally:
        await v.server.stop()
