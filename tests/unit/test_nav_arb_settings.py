"""NAV-arb settings (streams/settings.py): the defaults are NavArbParams', per-pair overrides apply
to their pair only, a bad value stops the worker at start, and the role is on by default."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from pydantic import ValidationError

from execution.nav_arb import NavArbParams
from streams.settings import Settings, WorkerRole


def test_defaults_are_the_seeds_and_the_role_runs_in_a_plain_worker() -> None:
    settings = Settings()
    assert settings.nav_arb_params("GBTC-BTC") == NavArbParams()
    assert WorkerRole.NAV_ARB in settings.worker_roles
    assert settings.consumer_group() == settings.app_id  # every role: the app id, as before


def test_per_pair_overrides_apply_to_their_pair_only() -> None:
    settings = Settings(NAV_ARB_WINDOW=40, NAV_ARB_PAIRS={"GBTC-BTC": {"trust_qty": 50, "spot_step": "0.0001",
                                                                       "entry_z": "2.5"}})
    assert settings.nav_arb_params("GBTC-BTC") == NavArbParams(window=40, trust_qty=D(50), spot_step=D("0.0001"),
                                                              entry_z=2.5)
    assert settings.nav_arb_params("ETHE-ETH") == NavArbParams(window=40)


@pytest.mark.parametrize("env", [{"NAV_ARB_PAIRS": {"GBTC-BTC": {"trustqty": 5}}},
                                 {"NAV_ARB_MIN_OBS": 100},
                                 {"NAV_ARB_PAIRS": {"GBTC-BTC": {"trust_qty": 0}}}])
def test_a_bad_setting_is_refused_when_the_settings_load(env: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**env)  # type: ignore[arg-type]


def test_a_nav_arb_only_worker_has_a_group_of_its_own() -> None:
    assert Settings(SUPERINTEL_APP_ID="si", WORKER_ROLES=["nav-arb"]).consumer_group() == "si-nav-arb"
    assert Settings(SUPERINTEL_APP_ID="si", WORKER_ROLES=["router", "executors", "fills"]).consumer_group() \
        == "si-executors-fills-router"
