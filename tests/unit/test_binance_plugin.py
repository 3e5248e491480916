"""Binance as a venue plug-in: one settings class read from ``BINANCE_*``, secrets that stay
secret, the registry entry, and a registry that can be read without loading ccxt. The plug-in
building a working adapter against the simulator is in tests/contract/test_binance_adapter.py."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from pydantic import SecretStr

from adapters.binance import PLUGIN, BinanceConfig
from adapters.registry import default_registry
from execution.retry import Backoff
from schemas import AssetClass, Broker
from tests.fixtures.binance import binance_test_config

KEY, SECRET = "env-key-5d1c7a", "env-secret-88e0f3b2"


def test_settings_come_from_the_binance_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "BINANCE_ENABLED": "true",
        "BINANCE_API_KEY": KEY,
        "BINANCE_API_SECRET": SECRET,
        "BINANCE_BASE_URL": "http://127.0.0.1:8010",
        "BINANCE_POLL_INTERVAL": "0.5",
        "BINANCE_RECV_WINDOW_MS": "7000",
        "BINANCE_TIMEOUT_MS": "2500",
        "BINANCE_RATE_LIMIT_MS": "1",
        "BINANCE_BACKOFF": '{"attempts": 6, "base": 0.1}',
        "BINANCE_MAX_RETRY_AFTER": "4",
        "BINANCE_ADJUST_FOR_TIME_DIFFERENCE": "false",
        "BINANCE_AUTH_RECHECK_INTERVAL": "12",
        "POLL_INTERVAL": "99",  # unprefixed: not Binance's
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = PLUGIN.settings()
    assert isinstance(cfg, BinanceConfig) and cfg.enabled is True
    assert cfg.api_key.get_secret_value() == KEY and cfg.api_secret.get_secret_value() == SECRET
    assert cfg.has_credentials
    assert (cfg.base_url, cfg.poll_interval, cfg.recv_window_ms, cfg.timeout_ms) == ("http://127.0.0.1:8010", 0.5,
                                                                                     7000, 2500)
    assert (cfg.rate_limit_ms, cfg.max_retry_after, cfg.auth_recheck_interval) == (1.0, 4.0, 12.0)
    assert cfg.backoff == Backoff(attempts=6, base=0.1)
    assert cfg.adjust_for_time_difference is False
    # keyword arguments win over the environment
    assert PLUGIN.settings(poll_interval=0.05, enabled=False).poll_interval == 0.05
    assert BinanceConfig(backoff=Backoff(attempts=2)).backoff.attempts == 2


def test_defaults_and_empty_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENABLED", "API_KEY", "API_SECRET", "POLL_INTERVAL", "BACKOFF"):
        monkeypatch.delenv(f"BINANCE_{name}", raising=False)
    monkeypatch.setenv("BINANCE_BASE_URL", "")  # as `BINANCE_BASE_URL= superintel worker` leaves it
    monkeypatch.setenv("BINANCE_RATE_LIMIT_MS", "")
    cfg = BinanceConfig()
    assert cfg.enabled is False and cfg.base_url is None and cfg.rate_limit_ms is None
    assert cfg.poll_interval == 3.0 and cfg.backoff == Backoff()
    assert not cfg.has_credentials


def test_settings_are_frozen() -> None:
    cfg = binance_test_config("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="frozen"):
        cfg.poll_interval = 1.0  # type: ignore[misc]


def test_secrets_never_in_repr_dump_or_log(caplog: pytest.LogCaptureFixture) -> None:
    cfg = BinanceConfig(api_key=SecretStr(KEY), api_secret=SecretStr(SECRET), base_url="http://x:1")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test.binance").info("settings %s / %r / %s", cfg, cfg, cfg.model_dump())
    shown = [repr(cfg), str(cfg), cfg.model_dump_json(), caplog.text]
    for text in shown:
        assert KEY not in text and SECRET not in text
    assert "**********" in caplog.text


def test_test_config_ignores_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's (or the demo's) BINANCE_* variables must not change the suite's adapter."""
    monkeypatch.setenv("BINANCE_RECV_WINDOW_MS", "1")
    monkeypatch.setenv("BINANCE_ADJUST_FOR_TIME_DIFFERENCE", "false")
    monkeypatch.setenv("BINANCE_API_SECRET", "from-the-shell")
    cfg = binance_test_config("http://127.0.0.1:1")
    assert cfg.recv_window_ms == 5000 and cfg.adjust_for_time_difference is True
    assert cfg.api_secret.get_secret_value() != "from-the-shell"


def test_the_registry_lists_binance_with_its_capabilities() -> None:
    registry = default_registry()
    assert registry.get(Broker.BINANCE) is PLUGIN
    assert Broker.BINANCE in [p.broker for p in registry]
    assert PLUGIN.settings_type is BinanceConfig
    assert PLUGIN.fill_delivery == "poll"
    assert PLUGIN.priced_classes == frozenset({AssetClass.CRYPTO})
    assert PLUGIN.description


def test_reading_the_registry_does_not_load_ccxt() -> None:
    """A router-only worker reads the registry (to learn which venues are enabled) and never trades:
    it must not pay for importing ccxt (nor ib_async, nor httpx for MT4)."""
    probe = (
        "import sys\n"
        "from adapters.registry import default_registry\n"
        "from schemas import Broker\n"
        "plugin = default_registry().get(Broker.BINANCE)\n"
        "assert plugin is not None and plugin.settings(enabled=False).enabled is False\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('ccxt', 'aiohttp', 'ib_async', 'httpx'))\n"
        "binance = sorted(m for m in sys.modules if m.startswith('adapters.binance'))\n"
        "print(loaded, binance)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == (
        "[] ['adapters.binance', 'adapters.binance.config', 'adapters.binance.plugin']"
    )
