"""Dead-lettering shared by every agent: a message that cannot be processed is kept whole on
``signals.dlq`` with the reason and where it came from, and the agent moves on.

A dead letter replaces the processing of its message, so it must be on the broker before that
message's offset is committed: every method here returns only once its letters were delivered
(``DeliveryFailed`` otherwise, which the agents retry like any infrastructure failure). Letters
of one call are sent together and their deliveries awaited together.
"""

from __future__ import annotations

import base64
import inspect
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from faust.types import EventT, TopicT
from pydantic import BaseModel, ValidationError

from agents.publish import PRODUCE_ERRORS, DeliveryFailed, delivered
from schemas import DeadLetter

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def describe(exc: Exception) -> str:
    """A one-line, human-readable reason (pydantic errors listed field by field)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "message"
            parts.append(f"{where}: {err['msg']}")
        return f"invalid {exc.title}: " + "; ".join(parts)
    return f"{type(exc).__name__}: {exc}"


def _text(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode()
    return str(raw)


class DeadLetters:
    def __init__(self, topic: TopicT, agent: str) -> None:
        self._topic = topic
        self._agent = agent

    async def send(self, event: EventT[Any], reason: str) -> None:
        """Dead-letter one message; returns once the letter was delivered."""
        await self.send_all([(event, reason)])

    async def send_all(self, letters: Iterable[tuple[EventT[Any], str]]) -> None:
        """Dead-letter each ``(message, reason)``; returns once every letter was delivered."""
        deliveries: list[Awaitable[object]] = []
        for event, reason in letters:
            deliveries.append(await self._post(event, reason))
        await delivered(deliveries, "dead letters")

    async def _post(self, event: EventT[Any], reason: str) -> Awaitable[object]:
        """Hand one letter to the producer; its delivery is awaited by the caller."""
        msg = event.message
        key = _text(event.key) or None
        letter = DeadLetter(
            source_topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=key,
            raw=_text(event.value),
            reason=reason,
            agent=self._agent,
        )
        log.warning("dead letter from %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, reason)
        try:
            # Faust's Topic.send returns the delivery (resolved once the broker acknowledged it)
            delivery: object = await self._topic.send(key=event.key, value=letter.to_bytes())
        except PRODUCE_ERRORS as exc:  # refused before it was even buffered
            raise DeliveryFailed(f"dead-lettering {msg.topic}@{msg.offset} failed: {exc!r}") from exc
        return delivery if inspect.isawaitable(delivery) else _done()

    async def parse(self, events: Iterable[EventT[Any]], model: type[M]) -> list[M]:
        """Validate each event's JSON as ``model``; dead-letter the ones that fail (delivered
        before this returns)."""
        parsed: list[M] = []
        rejected: list[tuple[EventT[Any], str]] = []
        for event in events:
            try:
                parsed.append(model.model_validate_json(event.value))
            except ValidationError as exc:
                rejected.append((event, describe(exc)))
        await self.send_all(rejected)
        return parsed


async def _done() -> None:
    """The delivery of a letter a test double already kept."""
