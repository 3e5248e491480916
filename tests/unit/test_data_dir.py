"""Faust's data directory is a setting (issue 16): under .superintel/ by default, never loose in the
directory a worker starts in, and a temporary one in tests (tests/conftest.py sets it)."""

from __future__ import annotations

import os
from pathlib import Path

from streams.app import build_app
from streams.settings import Settings


def _settings(**env: str) -> Settings:
    # asyncio's loop: build_app would otherwise make uvloop the policy of this test process
    return Settings(SUPERINTEL_EVENT_LOOP="asyncio", SUPERINTEL_APP_ID="si-datadir-test", WORKER_ROLES=[], **env)


def test_the_worker_keeps_its_data_below_the_configured_directory(tmp_path: Path) -> None:
    app = build_app(_settings(SUPERINTEL_DATA_DIR=str(tmp_path)))
    assert app.conf.datadir == tmp_path / "si-datadir-test"


def test_by_default_the_data_directory_is_under_dot_superintel() -> None:
    saved = os.environ.pop("SUPERINTEL_DATA_DIR", None)
    try:
        settings = _settings()
    finally:
        if saved is not None:
            os.environ["SUPERINTEL_DATA_DIR"] = saved
    assert settings.data_dir == Path(".superintel") / "data"
    assert build_app(settings).conf.datadir == Path(".superintel") / "data" / "si-datadir-test"


def test_the_test_run_uses_a_temporary_data_directory() -> None:
    configured = Path(os.environ["SUPERINTEL_DATA_DIR"])
    assert configured.is_absolute() and Path.cwd() not in configured.parents
