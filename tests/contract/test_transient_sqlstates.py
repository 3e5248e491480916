"""Database failures that say nothing about the batch are waited out, not dead-lettered (issue 12).

A statement cancelled by ``statement_timeout`` (57014) or refused by a read-only transaction
(25006, a standby during a failover), a server out of disk (53100) or memory (53200) or restarting
after a crash (57P02): the same batch passes once the database recovers, so ``process_batch``
must hold and retry it. Dead-lettering it, as before, dropped every good message of the batch.
The errors here are produced by the real PostgreSQL, not constructed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast
from urllib.parse import urlencode

import asyncpg
import pytest
import pytest_asyncio
from faust.types import EventT, TopicT

from adapters.timescale import TRANSIENT_ERRORS, TimescaleStore
from agents.batches import parse_items, process_batch
from agents.dead_letters import DeadLetters
from execution.retry import Backoff
from schemas import Order, OrderRequest
from streams.bootstrap import infrastructure_errors
from tests.unit.fakes import Event, Message, RecordingTopic

NO_WAIT = Backoff(attempts=1_000_000, base=0.0, cap=0.0, jitter=0.0)


def events(n: int, prefix: str) -> list[EventT[Any]]:
    out = []
    for i in range(n):
        data = {"signal_id": f"{prefix}-{i}", "client_order_id": f"{prefix}-cid-{i}", "strategy": "momo",
                "symbol": "BTC-USDT", "side": "BUY", "quantity": "0.5", "asset_class": "CRYPTO",
                "broker": "paper", "ts": "2026-11-25T14:30:00Z"}
        out.append(cast(EventT[Any], Event(Message("orders.paper", 0, i), b"BTC-USDT", json.dumps(data).encode())))
    return out


def with_settings(dsn: str, **settings: str) -> str:
    """The DSN with server settings for every connection (asyncpg passes unknown DSN query
    parameters to the server as session settings)."""
    return f"{dsn}{'&' if '?' in dsn else '?'}{urlencode(settings)}"


@pytest_asyncio.fixture(loop_scope="session")
async def impatient_store(store: TimescaleStore, database_url: str) -> AsyncIterator[TimescaleStore]:
    """A second store on the same (emptied) database whose statements time out after 200 ms."""
    impatient = TimescaleStore(with_settings(database_url, statement_timeout="200"), max_pool_size=2)
    await impatient.start()
    try:
        yield impatient
    finally:
        await impatient.close()


@pytest_asyncio.fixture(loop_scope="session")
async def read_only_store(store: TimescaleStore, database_url: str) -> AsyncIterator[TimescaleStore]:
    """A store whose sessions are read-only, as connections to a standby are during a failover
    (``start`` is skipped: migrations cannot run read-only, and ``store`` already applied them)."""
    replica = TimescaleStore(with_settings(database_url, default_transaction_read_only="on"), max_pool_size=2)
    replica._pool = await asyncpg.create_pool(with_settings(database_url, default_transaction_read_only="on"),
                                              min_size=1, max_size=2)
    try:
        yield replica
    finally:
        await replica.close()


@pytest.mark.parametrize("cls", [asyncpg.DiskFullError, asyncpg.OutOfMemoryError, asyncpg.QueryCanceledError,
                                 asyncpg.CrashShutdownError, asyncpg.ReadOnlySQLTransactionError])
def test_these_sqlstates_are_transient_for_every_agent(cls: type[Exception]) -> None:
    assert issubclass(cls, TRANSIENT_ERRORS)
    assert issubclass(cls, infrastructure_errors())


async def test_a_statement_timeout_holds_the_batch_until_it_passes(
    store: TimescaleStore, impatient_store: TimescaleStore
) -> None:
    """Another session holds a lock on ``orders`` (a long migration, a VACUUM FULL): step 2 is
    cancelled by statement_timeout (57014) again and again; once the lock is gone the same
    batch goes through, whole, and nothing is dead-lettered."""
    items_events = events(12, "timeout")
    topic = RecordingTopic()
    dead = DeadLetters(cast(TopicT, topic), "executor-paper")
    items = await parse_items(items_events, OrderRequest, dead)
    failures: list[BaseException] = []
    sizes: list[int] = []
    failed_often = asyncio.Event()

    async def step2(requests: Sequence[OrderRequest]) -> None:
        sizes.append(len(requests))
        try:
            await impatient_store.insert_orders([Order.from_request(r) for r in requests])
        except BaseException as exc:
            failures.append(exc)
            if len(failures) >= 6:  # twice the tries a failing batch gets before it is split
                failed_often.set()
            raise

    locker = await asyncpg.connect(store._dsn)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        batch = asyncio.create_task(process_batch("executor-paper", items, step2, dead, TRANSIENT_ERRORS,
                                                  backoff=NO_WAIT))
        await asyncio.wait_for(failed_often.wait(), 30)
        await tx.rollback()  # the lock goes away
        assert await asyncio.wait_for(batch, 30) == 0
    finally:
        await locker.close()

    assert {type(f) for f in failures} == {asyncpg.QueryCanceledError}
    assert len(failures) >= 6 and set(sizes) == {12}  # the whole batch, retried, never split
    assert topic.letters == []
    stored = await store.get_orders([f"timeout-cid-{i}" for i in range(12)])
    assert sorted(stored) == sorted(f"timeout-cid-{i}" for i in range(12))


async def test_a_read_only_database_holds_the_batch_until_the_failover_completes(
    store: TimescaleStore, read_only_store: TimescaleStore
) -> None:
    """Writes reach a read-only session (25006) until the failover completes; the batch is
    retried, then written whole; nothing is dead-lettered."""
    topic = RecordingTopic()
    dead = DeadLetters(cast(TopicT, topic), "executor-paper")
    items = await parse_items(events(8, "readonly"), OrderRequest, dead)
    failures: list[BaseException] = []
    sizes: list[int] = []

    async def step2(requests: Sequence[OrderRequest]) -> None:
        sizes.append(len(requests))
        # the first five attempts land on the standby; then the primary is back
        target = read_only_store if len(failures) < 5 else store
        try:
            await target.insert_orders([Order.from_request(r) for r in requests])
        except BaseException as exc:
            failures.append(exc)
            raise

    assert await process_batch("executor-paper", items, step2, dead, TRANSIENT_ERRORS, backoff=NO_WAIT) == 0
    assert [type(f) for f in failures] == [asyncpg.ReadOnlySQLTransactionError] * 5
    assert sizes == [8] * 6  # the whole batch each time: held and retried, never split
    assert topic.letters == []
    stored = await store.get_orders([f"readonly-cid-{i}" for i in range(8)])
    assert len(stored) == 8
