"""Dead-lettering shared by every agent: a message that cannot be processed is kept whole on
``signals.dlq`` with the reason and where it came from, and the agent moves on."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Any, TypeVar

from faust.types import EventT, TopicT
from pydantic import BaseModel, ValidationError

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
        await self._topic.send(key=event.key, value=letter.to_bytes())

    async def parse(self, events: Iterable[EventT[Any]], model: type[M]) -> list[M]:
        """Validate each event's JSON as ``model``; dead-letter the ones that fail."""
        parsed: list[M] = []
        for event in events:
            try:
                parsed.append(model.model_validate_json(event.value))
            except ValidationError as exc:
                await self.send(event, describe(exc))
        return parsed
