"""streams/compat.py: the private Faust/aiokafka names the code relies on are checked at import,
against the pinned versions, with an error naming what changed (issue 12)."""

from __future__ import annotations

import importlib
import sys

import aiokafka
import pytest
from faust.transport import consumer as faust_consumer

from streams import compat


def test_every_private_name_the_code_relies_on_is_there_in_the_pinned_versions() -> None:
    assert compat.check() == []
    compat.verify()  # no error


def test_the_pins_are_read_from_the_project_metadata() -> None:
    pins = compat.pinned_versions()
    assert pins["faust-streaming"] == "0.15.3"
    assert pins["aiokafka"] == "0.14.0"


def test_a_missing_method_fails_the_import_naming_it_its_user_and_the_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(faust_consumer.Consumer, "_get_active_partitions")
    with pytest.raises(ImportError) as info:
        compat.verify()
    message = str(info.value)
    assert "faust.transport.consumer:Consumer._get_active_partitions" in message
    assert "streams/transport.py TunedConsumer.on_buffer_drop/wake_fetch" in message
    assert "is missing" in message
    assert "faust-streaming 0.15.3 installed, 0.15.3 pinned in pyproject.toml" in message


def test_importing_the_app_module_runs_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(faust_consumer.Consumer, "_get_active_partitions")
    monkeypatch.delitem(sys.modules, "streams.app", raising=False)
    with pytest.raises(ImportError, match="_get_active_partitions"):
        importlib.import_module("streams.app")
    # (monkeypatch puts the attribute and the module imported before back afterwards)


def test_a_changed_signature_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    async def _add_gap(self: object, tp: object, start: int, end: int) -> None: ...

    monkeypatch.setattr(faust_consumer.Consumer, "_add_gap", _add_gap)
    problems = compat.check()
    assert [(p.requirement.attribute, p.what) for p in problems] == [
        ("_add_gap", "takes (tp, start, end), expected (tp, offset_from, offset_to)")
    ]


def test_an_instance_attribute_no_longer_assigned_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka must still store ``_fetch_max_wait_ms`` in __init__ and read it in start(), or the
    tuned fetch wait would silently stop applying."""
    original = aiokafka.AIOKafkaConsumer.start

    async def start(self: aiokafka.AIOKafkaConsumer) -> None:  # reads the wait from elsewhere
        await original(self)

    monkeypatch.setattr(aiokafka.AIOKafkaConsumer, "start", start)
    problems = compat.check()
    assert [(p.requirement.attribute, p.requirement.kind, p.what) for p in problems] == [
        ("_fetch_max_wait_ms", "read", "is no longer read by start"),
        # and the fetcher AdaptiveFetchWait wraps is no longer created there (issue 16)
        ("_fetcher", "assigned", "is no longer assigned by start"),
    ]


def test_a_changed_original_of_the_copied_drain_loop_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    async def _drain_messages(self: object, fetcher: object) -> None:
        """Upstream changed the loop our TunedConsumer copies."""

    monkeypatch.setattr(faust_consumer.Consumer, "_drain_messages", _drain_messages)
    problems = compat.check()
    assert [p.requirement.attribute for p in problems] == ["_drain_messages"]
    assert "no longer matches the original" in problems[0].what
