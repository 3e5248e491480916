"""The Faust application: topics, tuned consumer, and the agents this worker runs.

``build_app`` is a factory (not an import-time global) so the CLI, tests and benchmarks can build
an app from explicit Settings and a composition (``streams/bootstrap.py``) of their choosing;
``streams.cli`` exposes it through Faust's own ``app.main()``. Agents are handed narrow parts of
the composition (a router, an executor's parts, the fill sinks, the topics they use), never the
app's composition itself.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import os
import threading
from typing import Any

import faust
from faust.types import TopicT, TransportT

from agents.parts import AgentTopics
from streams import compat, topics, transport
from streams.bootstrap import Bootstrap
from streams.settings import Settings, WorkerRole, get_settings

log = logging.getLogger(__name__)

# The private Faust/aiokafka names streams/transport.py and agents/batches.py rely on: a worker
# on changed library versions stops here, naming them, instead of failing in a running agent.
compat.verify()


def stream_topics(app: faust.App, partitions: int) -> AgentTopics:
    """The app's topic objects, created with the configured partition count (Kafka can't shrink
    partitions and Tansu can't add them, so the count is fixed at creation)."""

    def topic(name: str) -> TopicT:
        return app.topic(name, partitions=partitions, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    return AgentTopics(
        signals=topic(topics.SIGNALS),
        orders={b: topic(name) for b, name in topics.ORDER_TOPICS.items()},
        order_events=topic(topics.ORDER_EVENTS),
        fills=topic(topics.FILLS),
        nav_quotes=topic(topics.NAV_QUOTES),
        dlq=topic(topics.DLQ),
        nav_legs=topic(topics.NAV_LEGS),
    )


class ExecutionApp(faust.App):
    bootstrap: Bootstrap
    streams: AgentTopics

    def _new_transport(self) -> TransportT:
        return transport.TunedTransport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        # Faust creates its data directory without parents (SUPERINTEL_DATA_DIR may not exist yet)
        self.conf.datadir.parent.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()

    async def on_started(self) -> None:
        await super().on_started()
        # Everything alive now (modules, Faust's and aiokafka's machinery: ~100k objects) lives as
        # long as the worker. Moving it out of the collector's reach makes a full (generation 2)
        # collection ~1 ms instead of ~30 ms, a pause that held up every message in flight and
        # showed as the p99 at 100 signals/s (bench/run.py).
        gc.collect()
        gc.freeze()

    async def on_stop(self) -> None:
        """The stop's first step (the agents, consumer and producer are stopped after it): Faust
        waits here for batches in progress, commits, and flushes the producer. In a worker process
        a watchdog bounds the whole stop to ``SHUTDOWN_GRACE``; this step gets half of it, so
        the children (agents handing their claims over) still have time of their own."""
        if self.in_worker:
            _arm_exit_watchdog(transport.SHUTDOWN_GRACE)
        try:
            await asyncio.wait_for(super().on_stop(), timeout=transport.SHUTDOWN_GRACE / 2)
        except TimeoutError:
            log.warning("stopping: waiting for work in progress / flushing the producer took over %.1f s; "
                        "going on (nothing unfinished is committed)", transport.SHUTDOWN_GRACE / 2)

    async def on_shutdown(self) -> None:
        """After the agents stopped (and released what they could): close the composition's
        pools and clients, bounded like the rest of the stop."""
        await super().on_shutdown()
        try:
            await asyncio.wait_for(self.bootstrap.close(), timeout=2.0)
        except TimeoutError:
            log.warning("stopping: closing the database pool / venue clients took over 2 s; exiting anyway")


def _arm_exit_watchdog(grace: float) -> None:
    """Exit the process ``grace`` seconds from now if it is still running: the last resort of a
    stop that hangs anyway (a library waiting on an unreachable peer, a blocked event loop). A
    thread, not a task, so a stuck loop cannot hold it up. Exiting there commits nothing more:
    whatever was not committed is processed again after the restart, idempotently."""

    def expire() -> None:
        log.critical("stopping took longer than SHUTDOWN_GRACE=%.1f s (an unreachable broker, database "
                     "or venue?); exiting now without committing anything more", grace)
        logging.shutdown()
        os._exit(EXIT_STOP_TIMED_OUT)

    timer = threading.Timer(grace, expire)
    timer.daemon = True
    timer.start()


#: the exit status of a worker whose graceful stop overran SHUTDOWN_GRACE
EXIT_STOP_TIMED_OUT = 1


def build_app(
    settings: Settings | None = None, *, bootstrap: Bootstrap | None = None, **overrides: Any
) -> ExecutionApp:
    """The worker's app: ``bootstrap`` is the composition (production defaults when omitted)."""
    settings = settings or (bootstrap.settings if bootstrap is not None else get_settings())
    _use_event_loop(settings.event_loop)
    transport.FETCH_MAX_WAIT_MS = settings.fetch_max_wait_ms
    transport.FETCH_IDLE_WAIT_MS = settings.fetch_idle_wait_ms
    transport.FETCH_IDLE_AFTER = settings.fetch_idle_after
    transport.SHUTDOWN_GRACE = settings.shutdown_grace
    app = ExecutionApp(
        settings.consumer_group(),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=1.0,
        producer_request_timeout=settings.producer_request_timeout,
        consumer_auto_offset_reset="earliest",
        producer_linger=0.0,
        # one record batch per partition per agent batch: Faust's 16 KB default split a
        # 500-signal router batch into ~4 per partition (A/B: router 17.3k -> 21.2k msg/s)
        producer_max_batch_size=256 * 1024,
        web_enabled=False,
        web_port=settings.web_port,
        autodiscover=False,
        datadir=str(settings.data_dir / "{conf.name}"),  # Faust fills in the app id
        **overrides,
    )
    app.bootstrap = composition = bootstrap or Bootstrap(settings)
    app.streams = streams = stream_topics(app, settings.topic_partitions)

    from agents import executor, fills, nav_arb, router
    from agents.batches import BatchLimits

    limits = BatchLimits(settings.batch_max, settings.batch_window)
    roles = set(settings.worker_roles)
    if WorkerRole.ROUTER in roles:
        router.register(app, streams, composition.router(), limits)
    if WorkerRole.EXECUTORS in roles:
        for broker in settings.executor_brokers():
            executor.register(app, streams, broker, composition.executor(broker), limits)
    if WorkerRole.FILLS in roles:
        fills.register(app, streams, composition.fill_sinks(), limits)
    if WorkerRole.NAV_ARB in roles:
        nav_arb.register(app, streams, composition.nav_arb(), limits, app_id=settings.app_id,
                         partitions=settings.topic_partitions)
    log.info("app %s: roles=%s brokers=%s", app.conf.id, sorted(roles), settings.executor_brokers())
    return app


def _use_event_loop(name: str) -> None:
    """Make new event loops uvloop's (when asked and installed): Faust and aiokafka create futures,
    tasks and callbacks per message, and uvloop runs that machinery in C (bench/run.py: about 10%
    less worker CPU per signal). Must run before the worker creates its loop; ``build_app`` is
    called first thing by ``superintel worker``."""
    if name == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            log.warning("SUPERINTEL_EVENT_LOOP=uvloop but uvloop is not installed; using asyncio's loop")
            return
        import mode.loop

        mode.loop.use("uvloop")
