"""The TWS API socket protocol's framing and field encoding, at server version 176.

Every message (both ways) is a 4-byte big-endian length followed by that many bytes: fields,
each terminated by a NUL. The connection opens with ``API\\0`` and one framed version range
(``v157..178``, optionally followed by connect options); the server answers one framed message
of exactly two fields, its version and its time, and from then on the client talks in
messages. Numbers are decimal text; an unset value is the empty string; booleans are ``0``/``1``.

This module knows bytes and fields only; what each message means is ``messages.py``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

#: the one version the simulator speaks: ib_async 2.x accepts 157-178, ib_insync 157-176
SERVER_VERSION = 176
API_PREFIX = b"API\0"
#: a frame larger than this is a broken or hostile peer, not a TWS client
MAX_FRAME = 16 * 1024 * 1024

#: IB's "unset double" as it travels when a client sends it without ``makeEmpty``
UNSET_DOUBLE = "1.7976931348623157E308"

Field = str | int | Decimal | bool | None


class ProtocolError(Exception):
    """The peer broke the framing or the handshake; the connection is closed."""


def encode_field(value: Field) -> str:
    """One field as TWS writes it: ``None`` is empty, booleans ``1``/``0``, decimals plain."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format_decimal(value)
    return str(value)


def format_decimal(value: Decimal) -> str:
    """A decimal in plain notation without a trailing exponent (``1E+2`` -> ``100``)."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def encode(fields: Iterable[Field]) -> bytes:
    """One framed message from its fields."""
    return frame(b"".join(encode_field(f).encode() + b"\0" for f in fields))


def decode(payload: bytes) -> list[str]:
    """The fields of one message's payload (the trailing NUL's empty remainder dropped)."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The payload of the next frame; ``IncompleteReadError`` when the peer closed."""
    header = await reader.readexactly(4)
    (size,) = struct.unpack(">I", header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes")
    return await reader.readexactly(size)


async def read_message(reader: asyncio.StreamReader) -> list[str]:
    return decode(await read_frame(reader))


async def read_handshake(reader: asyncio.StreamReader) -> tuple[int, int, str]:
    """``API\\0`` + framed ``v<min>..<max>[ options]`` -> (min, max, options)."""
    prefix = await reader.readexactly(len(API_PREFIX))
    if prefix != API_PREFIX:
        raise ProtocolError(f"expected the API prefix, got {prefix!r}")
    text = (await read_frame(reader)).decode(errors="replace").strip("\0")
    versions, _, options = text.partition(" ")
    if not versions.startswith("v"):
        raise ProtocolError(f"bad version range {text!r}")
    low, sep, high = versions[1:].partition("..")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError:
        raise ProtocolError(f"bad version range {text!r}") from None
    return lo, hi, options


def negotiate(low: int, high: int) -> int | None:
    """The version to speak with a client offering ``low..high``: 176, or None if outside its range."""
    return SERVER_VERSION if low <= SERVER_VERSION <= high else None


def connection_time(now: datetime) -> str:
    """The handshake's time field (``20250101 12:00:00 UTC``)."""
    return now.astimezone(UTC).strftime("%Y%m%d %H:%M:%S UTC")


def ib_time(ts: float) -> str:
    """An execution or completion time as TWS sends it: ``YYYYMMDD HH:MM:SS`` plus a zone name."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d %H:%M:%S UTC")


class Fields:
    """A cursor over an incoming message's fields with typed reads; a missing field reads as empty."""

    def __init__(self, fields: Sequence[str], start: int = 0) -> None:
        self._fields = fields
        self.pos = start

    def text(self) -> str:
        value = self._fields[self.pos] if self.pos < len(self._fields) else ""
        self.pos += 1
        return value

    def integer(self, default: int = 0) -> int:
        raw = self.text()
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            return int(Decimal(raw))

    def number(self) -> Decimal | None:
        """A price or quantity; None when unset (empty or IB's unset double)."""
        raw = self.text()
        if not raw or raw in (UNSET_DOUBLE, "1.7976931348623157e+308", "Infinite"):
            return None
        try:
            value = Decimal(raw)
        except ArithmeticError:
            raise ProtocolError(f"not a number: {raw!r}") from None
        if not value.is_finite() or value >= Decimal("1E300"):
            return None
        return value

    def flag(self) -> bool:
        raw = self.text()
        return raw not in ("", "0", "false", "False")

    def skip(self, count: int = 1) -> None:
        self.pos += count

    @property
    def remaining(self) -> int:
        return max(0, len(self._fields) - self.pos)
