"""The private parts of Faust, mode and aiokafka this code relies on, checked when it is imported.

Two places reach past the public APIs, each for a measured reason (see their docstrings):
``streams/transport.py`` (the consumer's fetch wait and its adaptation, a copy of Faust's message
drain loop, the wake-up of a fetch when a paused partition resumes) and ``agents/batches.py`` (a
batching stream that acks only after its batch was processed).
Those internals may change in any release, which is why ``faust-streaming`` and ``aiokafka`` are
pinned (pyproject.toml). A changed internal would otherwise fail far from its cause (an
``AttributeError`` in a running agent) or, worse, silently (a private attribute nobody reads any
more: the fetch wait not applied). So ``streams/app.py`` calls ``verify()`` at import: every
private name is looked up where the code uses it, and the first worker that starts against a
changed library stops with an ``ImportError`` naming each attribute, who uses it, the installed
version and the pinned one.

What is checked, per requirement: that a method or class attribute exists (and, for methods,
takes the parameters we pass), that an instance attribute is still assigned where we expect it
(read from the bytecode of the method that sets it, since there is no instance to look at yet),
and, for the Faust loop ``TunedConsumer._drain_messages`` copies, that Faust's original is the
very source the copy was made from.
"""

from __future__ import annotations

import dis
import hashlib
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from types import FunctionType
from typing import Any

log = logging.getLogger(__name__)

#: this project's distribution, whose metadata carries the pins of pyproject.toml
DISTRIBUTION = "superintel-execution"
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Requirement:
    """One private name of a library that our code relies on."""

    distribution: str
    #: where to look, as "module:Class" (resolved lazily, so a missing module is reported too)
    owner: str
    attribute: str
    #: what of ours uses it (named in the error)
    used_by: str
    #: "member": a method or class attribute; "assigned": an instance attribute stored by one of
    #: ``set_in`` (method names of ``owner``); "read": an attribute loaded by one of ``set_in``
    kind: str = "member"
    set_in: tuple[str, ...] = ("__init__",)
    #: for a method: the names of its first parameters after ``self``, as we call it
    params: tuple[str, ...] | None = None
    #: for a method our code copies: sha256 of the source it was copied from
    source_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    requirement: Requirement
    what: str

    def describe(self, versions: Callable[[str], str]) -> str:
        r = self.requirement
        name = f"{r.owner}.{r.attribute}" if r.attribute else r.owner
        return f"{name} ({versions(r.distribution)}), used by {r.used_by}: {self.what}"


FAUST = "faust-streaming"
AIOKAFKA = "aiokafka"
MODE = "mode-streaming"
_BATCHES = "agents/batches.py greedy_batches"
_DRAIN = "streams/transport.py TunedConsumer._drain_messages"
_ADAPTIVE = "streams/transport.py AdaptiveFetchWait"
_WAKE = "streams/transport.py TunedConsumer.on_buffer_drop/wake_fetch"
_SEEK = "streams/transport.py TunedConsumer.perform_seek"
_BATCH = "agents/publish.py Publisher.send_many"

#: sha256 of faust-streaming 0.15.3's ``Consumer._drain_messages`` source, which
#: ``TunedConsumer._drain_messages`` copies (changing only how each message is handed over)
DRAIN_MESSAGES_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"

REQUIREMENTS: tuple[Requirement, ...] = (
    # agents/batches.py: the agent's queue drained in bulk, with Faust's per-event bookkeeping done
    # as its stream iteration does it (public names, but only that iteration uses them this way)
    Requirement(FAUST, "faust.transport.consumer:Consumer", "track_message", _BATCHES, params=("message",)),
    Requirement(FAUST, "faust.types.tuples:Message", "tracked", _BATCHES),
    Requirement(FAUST, "faust.types.tuples:Message", "generation_id", _BATCHES),
    Requirement(FAUST, "faust.transport.conductor:Conductor", "acking_topics", _BATCHES),
    Requirement(FAUST, "faust.streams:Stream", "ack", _BATCHES, params=("event",)),
    Requirement(FAUST, "faust.streams:Stream", "_processors", _BATCHES, kind="assigned"),
    Requirement(FAUST, "faust.streams:Stream", "events_total", _BATCHES),
    Requirement(MODE, "mode.utils.queues:ThrowableQueue", "get_nowait", _BATCHES, params=()),
    # streams/transport.py: the fetch wait Faust hard-codes, injected into aiokafka's consumer
    Requirement(FAUST, "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_create_worker_consumer",
                "streams/transport.py TunedConsumerThread", params=("transport",)),
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaConsumer", "_fetch_max_wait_ms",
                "streams/transport.py TunedConsumerThread (set after __init__)", kind="assigned"),
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaConsumer", "_fetch_max_wait_ms",
                "streams/transport.py TunedConsumerThread (must be read by start(), after we set it)",
                kind="read", set_in=("start",)),
    # streams/transport.py: the drain loop without the per-message task race
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_drain_messages", _DRAIN, params=("fetcher",),
                source_sha256=DRAIN_MESSAGES_SHA256),
    Requirement(FAUST, "faust.transport.drivers.aiokafka:Consumer", "_new_consumer_thread",
                "streams/transport.py TunedConsumer", params=()),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_read_offset", _DRAIN, kind="assigned"),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_commit_every", _DRAIN, kind="assigned"),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_n_acked", _DRAIN),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_add_gap", _DRAIN,
                params=("tp", "offset_from", "offset_to")),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "suspend_flow", _DRAIN, kind="assigned"),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "callback", _DRAIN, kind="assigned"),
    Requirement(FAUST, "faust.transport.drivers.aiokafka:Consumer", "consumer_stopped_errors", _DRAIN),
    Requirement(FAUST, "faust.transport.drivers.aiokafka:Consumer", "getmany", _DRAIN, params=("timeout",)),
    Requirement(FAUST, "faust.transport.consumer:CONSUMER_FETCHING", "", _DRAIN, kind="module"),
    Requirement(FAUST, "faust.transport.conductor:Conductor", "acks_enabled_for", _DRAIN, params=("topic",)),
    Requirement(MODE, "mode:Service", "_stopped", _DRAIN, kind="assigned"),
    Requirement(MODE, "mode:Service", "diag", _DRAIN, kind="assigned"),
    # streams/transport.py AdaptiveFetchWait (issue 16): the fetcher's per-request coroutine, wrapped
    # on the instance, and the wait it puts in each request, set between requests
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaConsumer", "_fetcher", _ADAPTIVE, kind="assigned", set_in=("start",)),
    Requirement(AIOKAFKA, "aiokafka.consumer.fetcher:Fetcher", "_proc_fetch_request", _ADAPTIVE,
                params=("assignment", "node_id", "request")),
    Requirement(AIOKAFKA, "aiokafka.consumer.fetcher:Fetcher", "_proc_fetch_request",
                f"{_ADAPTIVE} (looked up on the instance for every request)", kind="read",
                set_in=("_fetch_requests_routine",)),
    Requirement(AIOKAFKA, "aiokafka.consumer.fetcher:Fetcher", "_fetch_max_wait_ms", _ADAPTIVE, kind="assigned"),
    Requirement(AIOKAFKA, "aiokafka.consumer.fetcher:Fetcher", "_fetch_max_wait_ms",
                f"{_ADAPTIVE} (read when each request is built)", kind="read", set_in=("_get_actions_per_node",)),
    Requirement(FAUST, "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_consumer", _ADAPTIVE),
    Requirement(FAUST, "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "on_start", _ADAPTIVE, params=()),
    # streams/transport.py: a backlog never waits out the fetch timeout (issue 16, item 1)
    Requirement(AIOKAFKA, "aiokafka.consumer.fetcher:Fetcher", "_fetch_waiters", _WAKE, kind="assigned"),
    Requirement(AIOKAFKA, "aiokafka.consumer.fetcher:Fetcher", "_create_fetch_waiter",
                f"{_WAKE} (fetched_records waits on these futures)", params=()),
    Requirement(AIOKAFKA, "aiokafka.consumer.fetcher:Fetcher", "_create_fetch_waiter",
                f"{_WAKE} (fetched_records waits on these futures)", kind="read", set_in=("fetched_records",)),
    Requirement(MODE, "mode.threads:ServiceThread", "thread_loop", _WAKE, kind="assigned"),
    # streams/transport.py: a partition without a committed offset is rewound on a seek (issue 15)
    Requirement(FAUST, "faust.transport.consumer:Consumer", "perform_seek", _SEEK, params=()),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_committed_offset", _SEEK, kind="assigned"),
    Requirement(FAUST, "faust.transport.consumer:ThreadDelegateConsumer", "_thread", _WAKE, kind="assigned"),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "on_buffer_drop", _WAKE, params=("tp",)),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_buffered_partitions", _WAKE, kind="assigned",
                set_in=("__init__", "_reset_state")),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_get_active_partitions", _WAKE, params=()),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "flow_active", _WAKE, kind="assigned",
                set_in=("_reset_state",)),
    # streams/transport.py: a stop bounded by SHUTDOWN_GRACE
    Requirement(FAUST, "faust.transport.consumer:ThreadDelegateConsumer", "_commit",
                "streams/transport.py TunedConsumer._commit (bounded while stopping)", params=("offsets",)),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "wait_empty",
                "streams/transport.py TunedConsumer.wait_empty (bounded while stopping)", params=()),
    Requirement(FAUST, "faust.transport.consumer:Consumer", "_unacked_messages",
                "streams/transport.py TunedConsumer.wait_empty", kind="assigned"),
    Requirement(MODE, "mode:Service", "shutdown_timeout",
                "streams/transport.py TunedConsumer._new_consumer_thread (the consumer thread's stop)"),
    # streams/app.py: the tuned transport, and the exit watchdog armed only in a worker process
    Requirement(FAUST, "faust:App", "_new_transport", "streams/app.py ExecutionApp", params=()),
    Requirement(FAUST, "faust:App", "in_worker", "streams/app.py ExecutionApp.on_stop"),
    # agents/publish.py: the producer behind Publisher, called positionally
    Requirement(FAUST, "faust:App", "maybe_start_producer", "agents/publish.py Publisher", params=()),
    Requirement(FAUST, "faust.transport.drivers.aiokafka:Producer", "send", "agents/publish.py Publisher",
                params=("topic", "key", "value", "partition", "timestamp", "headers")),
    # agents/publish.py Publisher.send_many (issue 16): Faust's aiokafka producer, its partition
    # choice (the one send makes), and one record batch per partition handed over whole
    Requirement(FAUST, "faust.transport.drivers.aiokafka:Producer", "_producer", _BATCH, kind="assigned",
                set_in=("on_start",)),
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaProducer", "_partition", _BATCH,
                params=("topic", "partition", "key", "value", "serialized_key", "serialized_value")),
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaProducer", "_partition", f"{_BATCH} (send's partition choice)",
                kind="read", set_in=("send",)),
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaProducer", "partitions_for", _BATCH, params=("topic",)),
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaProducer", "create_batch", _BATCH, params=()),
    Requirement(AIOKAFKA, "aiokafka:AIOKafkaProducer", "send_batch", _BATCH, params=("batch", "topic", "partition")),
    Requirement(AIOKAFKA, "aiokafka.producer.message_accumulator:BatchBuilder", "append", _BATCH,
                params=("timestamp", "key", "value")),
)


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)

    def add(self, requirement: Requirement, what: str) -> None:
        self.problems.append(Problem(requirement, what))


def _resolve(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    target: Any = __import__(module_name, fromlist=["_"])
    for part in qualname.split(".") if qualname else ():
        target = getattr(target, part)
    return target


def _functions(owner: type, names: Iterable[str]) -> list[FunctionType]:
    """The functions named ``names`` along ``owner``'s MRO (an __init__ may be a parent's)."""
    found = []
    for klass in inspect.getmro(owner):
        for name in names:
            function = vars(klass).get(name)
            if isinstance(function, FunctionType):
                found.append(function)
    return found


def _touches(functions: Sequence[FunctionType], attribute: str, ops: tuple[str, ...]) -> bool:
    """Whether any of ``functions`` stores/loads ``self.<attribute>`` (from their bytecode)."""
    for function in functions:
        for instruction in dis.get_instructions(function):
            if instruction.opname in ops and instruction.argval == attribute:
                return True
    return False


def _check(requirement: Requirement, report: Report) -> None:
    try:
        owner = _resolve(requirement.owner)
    except (ImportError, AttributeError) as exc:
        report.add(requirement, f"cannot be found ({exc})")
        return
    if requirement.kind == "module":
        return
    name = requirement.attribute
    if requirement.kind in ("assigned", "read"):
        ops = ("STORE_ATTR",) if requirement.kind == "assigned" else ("LOAD_ATTR", "LOAD_METHOD")
        functions = _functions(owner, requirement.set_in)
        if not _touches(functions, name, ops):
            verb = "assigned" if requirement.kind == "assigned" else "read"
            report.add(requirement, f"is no longer {verb} by {'/'.join(requirement.set_in)}")
        return
    member = inspect.getattr_static(owner, name, _MISSING)
    if member is _MISSING:
        report.add(requirement, "is missing")
        return
    if requirement.params is not None:
        function = member.__func__ if isinstance(member, staticmethod | classmethod) else member
        try:
            parameters = list(inspect.signature(function).parameters)[1:]
        except (TypeError, ValueError):
            report.add(requirement, "is no longer a method")
            return
        wanted = list(requirement.params)
        if parameters[: len(wanted)] != wanted:
            report.add(requirement, f"takes ({', '.join(parameters)}), expected ({', '.join(wanted)})")
            return
    if requirement.source_sha256 is not None:
        try:
            source = inspect.getsource(member)
        except (OSError, TypeError):
            return  # installed without sources: only the version pin guards the copy
        digest = hashlib.sha256(source.encode()).hexdigest()
        if digest != requirement.source_sha256:
            report.add(requirement, "changed: our copy of it no longer matches the original it was made from")


def pinned_versions() -> dict[str, str]:
    """``name -> version`` of every ``==`` pin in this project's requirements (pyproject.toml,
    as installed); empty when the project is not installed (running from a bare checkout)."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return {}
    pins = {}
    for requirement in requires:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^;\s]+)\s*", requirement)
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _versions(distribution: str, pins: dict[str, str]) -> str:
    installed = _installed(distribution) or "not installed"
    pinned = pins.get(_canonical(distribution))
    if pinned is None:
        return f"{distribution} {installed}, not pinned"
    return f"{distribution} {installed} installed, {pinned} pinned in pyproject.toml"


def check(requirements: Iterable[Requirement] = REQUIREMENTS) -> list[Problem]:
    """Every requirement that does not hold in the installed libraries (empty: all hold)."""
    report = Report()
    for requirement in requirements:
        _check(requirement, report)
    return report.problems


def verify(requirements: Iterable[Requirement] = REQUIREMENTS) -> None:
    """Raise ``ImportError`` listing every private name that changed; log a version drift."""
    pins = pinned_versions()
    problems = check(requirements)
    if problems:
        lines = "\n".join(f"  - {p.describe(lambda d: _versions(d, pins))}" for p in problems)
        raise ImportError(
            "Faust/aiokafka internals this code relies on changed in the installed versions:\n"
            f"{lines}\n"
            "Install the pinned versions (pip install -e .) or port the code named above to the new ones."
        )
    for distribution in (FAUST, AIOKAFKA):
        pinned, installed = pins.get(_canonical(distribution)), _installed(distribution)
        if pinned is not None and installed is not None and installed != pinned:
            log.warning("%s %s is installed, %s is pinned; its internals this code uses are all present",
                        distribution, installed, pinned)
