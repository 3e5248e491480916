"""A Faust Kafka transport tuned for latency: departures from Faust 0.15.3, each measured.

1. Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``. On a small, latency-sensitive
   flow a fetch then waits for data that is not coming, and each agent hop costs hundreds of
   milliseconds (measured by bench/kafka_hop.py). The consumer thread injects the configured wait
   instead, and adapts it (``AdaptiveFetchWait``): short while data comes, long once the consumer
   has been idle for a while, so an idle worker does not poll the broker hundreds of times a second.
2. Faust hands each fetched message to the agents through a task race (see ``TunedConsumer``).
3. A backlog never stalls on the fetch timeout (issue 16, item 1). When an agent's queue fills,
   Faust drops the partition from the active set (``Consumer.on_buffer_full``); the records already
   fetched for it wait in aiokafka's buffer, which aiokafka does not refetch, so a ``getmany`` on
   the remaining partitions waited out its whole timeout (1 s) before it looked at the re-activated
   partition again, and with every partition dropped Faust slept a second. Now the moment the
   queue drains (``on_buffer_drop``) wakes the waiting fetch, or the drain loop itself; and the
   commit every ``broker_commit_every`` acks no longer stops delivery while it is made.

Everything else is Faust's own code path (faust-streaming is pinned, since this overrides internals;
streams/compat.py checks every private name used here when the app is imported).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import aiokafka
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerT
from mode import Service

#: set by ``streams.app.build_app`` from Settings.fetch_max_wait_ms before the worker starts
FETCH_MAX_WAIT_MS = 10
#: set by ``streams.app.build_app`` from Settings.fetch_idle_wait_ms / fetch_idle_after
FETCH_IDLE_WAIT_MS = 100
FETCH_IDLE_AFTER = 1.0
#: set by ``streams.app.build_app`` from Settings.shutdown_grace: the whole stop's budget
SHUTDOWN_GRACE = 8.0

log = logging.getLogger(__name__)


class AdaptiveFetchWait:
    """The fetch long-poll, by how recently data came: ``busy_ms`` while fetches bring records,
    ``idle_ms`` once none has for ``idle_after`` seconds.

    Why: on Tansu a fetch that finds no data is answered only when its wait ends, so the wait is
    the latency of the first hop (design section 8: 5 ms keeps a hop at a few milliseconds), and
    a short wait on an idle broker is a fetch round trip every few milliseconds: 8-18 % of a core
    in the worker and more in the broker, doing nothing (bench/run.py, idle worker CPU). A long
    wait while idle costs only the first message after a quiet spell up to ``idle_ms`` on its
    first hop; the fetch that brings it switches back to the short wait, so the next hops and
    the rest of a burst are not delayed. On Apache Kafka a fetch returns as soon as data arrives,
    so the long wait costs nothing there.

    Applied by wrapping the fetcher's per-request coroutine (it reports whether records came)
    and setting the wait the fetcher puts in its next request; both live in the consumer
    thread, so no lock is needed."""

    def __init__(self, fetcher: Any, busy_ms: int, idle_ms: int, idle_after: float,
                 clock: Any = time.monotonic) -> None:
        self.fetcher = fetcher
        self.busy_ms = busy_ms
        self.idle_ms = max(idle_ms, busy_ms)
        self.idle_after = idle_after
        self._clock = clock
        self._last_data = clock()
        self._proc = fetcher._proc_fetch_request
        fetcher._fetch_max_wait_ms = busy_ms
        fetcher._proc_fetch_request = self._proc_fetch_request

    @property
    def wait_ms(self) -> int:
        return int(self.fetcher._fetch_max_wait_ms)

    def observe(self, got_records: bool) -> None:
        now = self._clock()
        if got_records:
            self._last_data = now
            self.fetcher._fetch_max_wait_ms = self.busy_ms
        elif now - self._last_data >= self.idle_after:
            self.fetcher._fetch_max_wait_ms = self.idle_ms

    async def _proc_fetch_request(self, assignment: Any, node_id: Any, request: Any) -> Any:
        got = await self._proc(assignment, node_id, request)
        self.observe(bool(got))
        return got


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    adaptive_wait: AdaptiveFetchWait | None = None

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka copies this attribute into its Fetcher in start(), which runs after us.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        consumer = self._consumer
        if consumer is not None and consumer._fetcher is not None:
            self.adaptive_wait = AdaptiveFetchWait(consumer._fetcher, FETCH_MAX_WAIT_MS, FETCH_IDLE_WAIT_MS,
                                                   FETCH_IDLE_AFTER)

    def wake_fetch(self) -> None:
        """Called from the agents' loop when a partition was re-activated: end the wait of a
        ``getmany`` in progress now, so it returns the records aiokafka already holds for that
        partition instead of waiting out its timeout for new data on the others."""
        consumer, loop = self._consumer, self.thread_loop
        if consumer is None or loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the thread's loop closed meanwhile
            loop.call_soon_threadsafe(_wake_waiters, consumer._fetcher)


def _report_commit_failure(task: asyncio.Future[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("commit after broker_commit_every acks failed (the timer commit retries it): %r",
                    task.exception())


def _wake_waiters(fetcher: Any) -> None:
    """Resolve the futures ``Fetcher.fetched_records`` waits on (as new records would): it then
    looks at its buffer again, with the partition set as it is now."""
    if fetcher is None:
        return
    for waiter in list(fetcher._fetch_waiters):
        if not waiter.done():
            waiter.set_result(None)


class TunedConsumer(faust_aiokafka.Consumer):
    """Faust's consumer, delivering each fetched message to the agents without a task race.

    Faust's ``Consumer._drain_messages`` hands every message over with
    ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an ``asyncio.wait`` per
    message, so each delivery takes at least two event-loop iterations. With seven agents on one
    loop an iteration is often milliseconds long, which capped delivery at a few hundred messages
    per second for the whole worker: at 500 signals/s (about 1,500 consumed messages/s) the
    backlog grew in the consumer while every agent queue stayed empty (bench/run.py, p50 ~100 ms
    -> ~50 ms with this change). The callback (the conductor putting the event on the agents'
    queues) normally completes without suspending, so it is awaited directly; only while a
    rebalance has suspended the flow is Faust's abortable race kept. A delivery blocked on a full
    agent queue is still ended by the rebalance: the fetcher is stopped (cancelled) and the queues
    cleared, and the unacked message is fetched again from the committed offset.

    The rest is Faust 0.15.3's loop as is (faust-streaming is pinned), but for the backlog
    handling of issue 16 (module docstring, item 3): when every partition was dropped from the
    active set (all agent queues full), the loop waits for ``on_buffer_drop`` rather than letting
    Faust's ``getmany`` sleep a second, and ``on_buffer_drop`` wakes a ``getmany`` in progress.
    ``fetches`` and ``empty_fetches`` count the ``getmany`` calls and those that brought nothing
    (bench/noop_agent.py reports them).
    """

    fetches = 0
    empty_fetches = 0
    #: how long one ``getmany`` waits for records (Faust's 1.0 s); a backlog never waits it out
    fetch_timeout = 1.0
    #: the longest a drain loop with no active partition waits for one before looking again
    resume_check_interval = 1.0
    _resumed: asyncio.Event | None = None

    def on_buffer_drop(self, tp: TP) -> None:
        paused = tp in self._buffered_partitions
        super().on_buffer_drop(tp)
        if paused:
            if self._resumed is not None:
                self._resumed.set()
            cast(TunedConsumerThread, self._thread).wake_fetch()

    async def _wait_for_active_partition(self) -> None:
        """Every assigned partition is paused for a full agent queue: wait until one is resumed
        (or ``resume_check_interval``, to look at the stop flags again) instead of fetching."""
        resumed = self._resumed
        if resumed is None:
            resumed = self._resumed = asyncio.Event()
        resumed.clear()
        if self._get_active_partitions():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(resumed.wait(), timeout=self.resume_check_interval)

    _count_commit: asyncio.Future[bool] | None = None

    def _commit_in_background(self) -> None:
        """The commit Faust makes every ``broker_commit_every`` acks, without holding up delivery.

        Faust awaits it in the drain loop, so no message reached the agents during the commit's
        round trip, and an agent draining a backlog found its queue empty and idled (bench/run.py,
        the do-nothing agent: a ~60 ms pause each time). It commits only what was acked, whether
        awaited or not; one at a time (``Consumer.commit`` itself waits for one in progress), and
        the timer commit (``broker_commit_interval``) and the stop's final commit still run."""
        running = self._count_commit
        if running is not None and not running.done():
            return  # the next threshold, the timer or the stop commits what is acked meanwhile
        self._count_commit = task = asyncio.ensure_future(self.commit())
        task.add_done_callback(_report_commit_failure)

    def _all_paused(self) -> bool:
        """Assigned partitions exist and Faust dropped every one of them for a full queue."""
        return bool(self._buffered_partitions) and not self._get_active_partitions()

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every = 100
        num_since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                if self.flow_active and self._all_paused():
                    await self._wait_for_active_partition()
                    continue
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=self.fetch_timeout)
                await self.sleep(0)  # getmany may return at once, again and again: let others run
                if not self.should_stop:
                    self.fetches += 1
                    got = 0
                    async for tp, message in ait:
                        got += 1
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                self._commit_in_background()
                            if flow_suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                await callback(message)
                            set_read_offset(tp, offset)
                    if not got:
                        self.empty_fetches += 1
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets (after a rebalance, and whenever ``getmany``
        finds the flow stopped and throws away what it fetched), plus: a partition with no
        committed offset goes back to its beginning, as a consumer starting without one would.

        Faust's seek leaves such a partition where aiokafka's fetch position is, which after a
        discarded fetch is past records never delivered: they are skipped until the worker
        restarts. Seen with the NAV-arb table (issue 15): a worker killed before its first commit
        and restarted while its table recovered skipped the quotes published meanwhile. Going back
        redelivers what was already processed, which every agent handles (idempotent); a
        committed offset of 0, which Faust and aiokafka do not seek to either, counts as none."""
        await super().perform_seek()
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return
        changelogs = self.app.tables.changelog_topics
        uncommitted = sorted(tp for tp in self.assignment()
                             if tp.topic not in changelogs and not self._committed_offset.get(tp))
        if uncommitted:
            await self._thread.seek_to_beginning(*(aiokafka.TopicPartition(tp.topic, tp.partition)
                                                   for tp in uncommitted))
            for tp in uncommitted:
                self._read_offset[tp] = None

    def _new_consumer_thread(self) -> TunedConsumerThread:
        thread = TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)
        # mode waits up to 60 s for the consumer thread's own shutdown (aiokafka leaving the
        # group, closing its fetcher), which never completes while the broker is unreachable
        thread.shutdown_timeout = SHUTDOWN_GRACE / 4
        return thread

    # -- a stop never hangs on the broker or on an agent that cannot finish ---------------------
    #
    # Faust's stop first waits for every message handed to an agent to be acked (``wait_empty``),
    # committing meanwhile, then commits once more. An agent holding a batch while the database
    # is down retries it until it passes (agents.batches), so that wait never ends; and with the
    # broker gone, aiokafka's commit looks for the group coordinator forever. While the app is
    # stopping, both are bounded: what is not finished by then is not acked, so not committed,
    # and is processed again after the restart (every step is idempotent).

    async def wait_empty(self) -> None:
        if not self.app.should_stop:
            await super().wait_empty()  # a rebalance: Faust's own wait
            return
        try:
            await asyncio.wait_for(super().wait_empty(), timeout=SHUTDOWN_GRACE / 3)
        except TimeoutError:
            log.warning("stopping with %d message(s) still in progress; their offsets are not committed, "
                        "they are processed again after the restart", len(self._unacked_messages))

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        if not self.app.should_stop:
            return await super()._commit(offsets)
        try:
            return await asyncio.wait_for(super()._commit(offsets), timeout=min(2.0, SHUTDOWN_GRACE / 4))
        except TimeoutError:
            log.warning("stopping: committing offsets timed out (broker unreachable?); not committed, "
                        "processed again after the restart")
            return False


class TunedTransport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = TunedConsumer
