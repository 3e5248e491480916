"""A TCP proxy in front of a real Kafka-API broker that can lose one kind of request.

Used to make a *produce* fail for real while everything else keeps working (fetches, offset
commits, group membership): the broker is started advertising the proxy's address, so every client
connection, after bootstrap too, passes through here. Client-to-broker bytes are cut into Kafka
request frames (``int32 size`` + header ``int16 api_key, int16 api_version, int32 correlation_id,
string client_id``); while ``drop_produce_from`` is set, a Produce request (api key 0) from a
client whose id starts with it is swallowed, unanswered, so the producer's request times out and,
after its own retries, the message's delivery fails, exactly as when a broker stops acknowledging.
Broker-to-client bytes pass untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

PRODUCE = 0


class KafkaProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: client id prefix whose Produce requests are dropped (None: nothing is dropped)
        self.drop_produce_from: str | None = None
        #: how many Produce requests were dropped so far
        self.dropped = 0
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._on_client, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _on_client(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        up = asyncio.create_task(self._requests(client_reader, broker_writer))
        down = asyncio.create_task(self._pipe(broker_reader, client_writer))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            for writer in (client_writer, broker_writer):
                writer.close()
            self._tasks -= {up, down}

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, OSError):  # either side hung up
            while True:
                size_bytes = await reader.readexactly(4)
                (size,) = struct.unpack(">i", size_bytes)
                payload = await reader.readexactly(size)
                if self._drops(payload):
                    self.dropped += 1
                    continue
                writer.write(size_bytes + payload)
                await writer.drain()

    def _drops(self, payload: bytes) -> bool:
        prefix = self.drop_produce_from
        if prefix is None or len(payload) < 10:
            return False
        api_key, _version, _correlation, id_length = struct.unpack(">hhih", payload[:10])
        if api_key != PRODUCE or id_length < 0:
            return False
        client_id = payload[10:10 + id_length].decode("utf-8", "replace")
        return client_id.startswith(prefix)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                writer.write(data)
                await writer.drain()
