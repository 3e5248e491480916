"""The MT4 adapter's pure parts (adapters/mt4/parsing.py, config.py, errors.py): units <-> lots,
an order's cumulative status over its tickets (partial closes, netting closes, deletes, commission),
a bracket's exit legs read from the entry's SL/TP, and the one error translation. No I/O."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal as D
from typing import Any

import pytest

from adapters.mt4.config import Mt4Config
from adapters.mt4.errors import BridgeError, BridgeUnreachable, retried, translate
from adapters.mt4.parsing import exit_status, order_status, parse_ticket, parse_tickets, to_lots, to_units, wire
from execution.ports import BrokerError, BrokerUnavailable, OrderRejected
from schemas import OrderState

CS = D(100_000)
STEP = D("0.01")


def raw(ticket: int, **fields: Any) -> dict[str, Any]:
    """A bridge order object with the contract's fields (README "MT4 bridge contract")."""
    base: dict[str, Any] = {
        "ticket": ticket, "symbol": "EURUSD", "side": "buy", "type": "market", "state": "open",
        "volume": "0.10", "open_price": "1.08510", "price": None, "open_time": "2026-03-02T09:30:00.000Z",
        "close_price": None, "close_time": None, "sl": None, "tp": None, "profit": "0.00",
        "commission": "-0.70", "swap": "0.00", "magic": 0, "comment": "", "client_id": "cid-1",
        "close_client_id": None, "from_ticket": None,
    }
    base.update(fields)
    return base


def status(tickets: list[dict[str, Any]], quantity: str = "10000", *, cid: str = "cid-1", settled: bool = True):
    return order_status(cid, [parse_ticket(t) for t in tickets], quantity=D(quantity), contract_size=CS,
                        commission_asset="USD", settled=settled)


# -- units <-> lots ------------------------------------------------------------------------------


@pytest.mark.parametrize(("units", "lots"), [("10000", "0.10"), ("1000", "0.01"), ("2500000", "25.00"),
                                             ("10000.000", "0.10"), ("123000", "1.23")])
def test_units_convert_to_lots_exactly(units: str, lots: str) -> None:
    converted = to_lots(D(units), contract_size=CS, lot_step=STEP, context="t")
    assert wire(converted) == lots and to_units(converted, CS) == D(units)


@pytest.mark.parametrize("units", ["12345", "500", "10000.5"])
def test_a_quantity_off_the_lot_step_is_refused_with_the_reason(units: str) -> None:
    with pytest.raises(OrderRejected) as err:
        to_lots(D(units), contract_size=CS, lot_step=STEP, context="MT4 order x")
    assert f"quantity {units} is not a multiple of 1000 units (0.01 lot)" in str(err.value)
    assert err.value.code == 131


def test_config_reads_mt4_env_and_keeps_the_token_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MT4_BASE_URL", "http://bridge:8000/")
    monkeypatch.setenv("MT4_API_TOKEN", "tok-very-secret")
    monkeypatch.setenv("MT4_CLOSE_OPPOSITE", "true")
    monkeypatch.setenv("MT4_LOT_STEP", "0.1")
    cfg = Mt4Config()
    assert cfg.base_url == "http://bridge:8000" and cfg.close_opposite is True and cfg.lot_step == D("0.1")
    assert cfg.step_units == D(10_000)
    assert "tok-very-secret" not in repr(cfg) and "tok-very-secret" not in str(cfg.model_dump())
    assert cfg.api_token.get_secret_value() == "tok-very-secret"


def test_defaults_follow_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("MT4_")]:
        monkeypatch.delenv(name)
    cfg = Mt4Config()
    assert (cfg.base_url, cfg.poll_interval, cfg.contract_size, cfg.lot_step, cfg.close_opposite, cfg.enabled) == \
        ("http://127.0.0.1:8005", 3.0, D(100_000), D("0.01"), False, False)


def test_reading_the_mt4_plugin_does_not_load_httpx() -> None:
    probe = ("import sys\nfrom adapters.mt4 import PLUGIN\nPLUGIN.settings(enabled=False)\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'httpx'))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MT4_")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60,
                         env=env)
    assert out.stdout.strip() == "[]"


# -- tickets ---------------------------------------------------------------------------------------


def test_tickets_parse_exact_decimals_and_refuse_nonsense() -> None:
    ticket = parse_ticket(raw(7, sl="1.07000", comment="x[sl]", from_ticket=5))
    assert (ticket.volume, ticket.open_price, ticket.sl, ticket.commission, ticket.from_ticket) == \
        (D("0.10"), D("1.08510"), D("1.07000"), D("-0.70"), 5)
    assert ticket.open_time is not None and ticket.open_time.tzinfo is not None
    with pytest.raises(BrokerError, match="state 'filled'"):
        parse_ticket(raw(8, state="filled"))
    with pytest.raises(BrokerError, match="not a decimal"):
        parse_ticket(raw(9, volume="lots"))
    with pytest.raises(BrokerError, match="without an orders list"):
        parse_tickets({"tickets": []})


def test_a_market_ticket_is_filled_with_its_commission_as_a_cost() -> None:
    s = status([raw(1)])
    assert s is not None
    assert (s.state, s.filled_quantity, s.avg_fill_price, s.commission, s.commission_asset, s.venue_order_id) == \
        (OrderState.FILLED, D(10000), D("1.0851"), D("0.70"), "USD", "1")
    assert s.filled_notional == D("10851")


def test_no_ticket_naming_the_order_means_the_venue_never_saw_it() -> None:
    assert status([raw(1, client_id="someone-else")]) is None
    assert status([]) is None


def test_pending_deleted_and_triggered_states() -> None:
    pending = raw(1, type="limit", state="pending", open_price=None, price="1.07000", commission="0.00")
    assert status([pending]).state is OrderState.SUBMITTED
    deleted = status([{**pending, "state": "deleted"}])
    assert deleted is not None and (deleted.state, deleted.filled_quantity) == (OrderState.CANCELLED, 0)
    assert "deleted" in deleted.reason


def test_a_partial_close_keeps_the_order_filled_in_full_at_its_open_price() -> None:
    """MT4 leaves the closed part on the original ticket and the rest on a new one (same client id)."""
    closed_part = raw(1, state="closed", volume="0.04", close_price="1.09000", commission="-0.28")
    remainder = raw(2, volume="0.06", commission="-0.42", from_ticket=1, comment="from #1")
    s = status([closed_part, remainder])
    assert s is not None
    assert (s.state, s.filled_quantity, s.avg_fill_price, s.commission) == \
        (OrderState.FILLED, D(10000), D("1.0851"), D("0.70"))


def test_netting_closes_count_for_the_order_that_closed_them_at_their_close_prices() -> None:
    """A BUY 0.15 that closed 0.10 of someone's SELL at 1.08600 and opened 0.05 at 1.08610."""
    closed = raw(1, side="sell", state="closed", volume="0.10", open_price="1.08400", close_price="1.08600",
                 client_id="other", close_client_id="cid-1", commission="-0.70")
    opened = raw(3, volume="0.05", open_price="1.08610", commission="-0.35")
    s = status([closed, opened], "15000")
    assert s is not None
    assert (s.state, s.filled_quantity) == (OrderState.FILLED, D(15000))
    assert s.filled_notional == D("10860") + D("5430.5")
    assert s.commission == D("0.35")  # the closed ticket's commission was its opener's
    # the order that opened that SELL keeps its own fill: opened in full
    theirs = status([closed], "10000", cid="other")
    assert theirs is not None and (theirs.state, theirs.filled_quantity, theirs.avg_fill_price) == \
        (OrderState.FILLED, D(10000), D("1.084"))


def test_an_incomplete_order_with_nothing_working_is_cancelled_only_once_settled() -> None:
    closed = raw(1, side="sell", state="closed", volume="0.10", close_price="1.08600", client_id="other",
                 close_client_id="cid-1")
    unsettled = status([closed], "15000", settled=False)
    assert unsettled is not None and unsettled.state is OrderState.PARTIALLY_FILLED
    settled = status([closed], "15000")
    assert settled is not None and (settled.state, settled.filled_quantity) == (OrderState.CANCELLED, D(10000))
    assert "remainder of 5000 units not working" in settled.reason


# -- bracket exits ---------------------------------------------------------------------------------


def legs(tickets: list[dict[str, Any]]) -> tuple[Any, Any]:
    parsed = [parse_ticket(t) for t in tickets]
    return tuple(exit_status(f"cid-1/{leg}", "cid-1", leg, parsed, quantity=D(10000), contract_size=CS)
                 for leg in ("sl", "tp"))  # type: ignore[return-value]


def test_exit_legs_follow_the_entry_tickets_sl_and_tp() -> None:
    entry = raw(1, sl="1.07000", tp="1.10000")
    sl, tp = legs([entry])
    assert sl.state is tp.state is OrderState.SUBMITTED and sl.filled_quantity == 0
    # MT4 marks the close "[tp]"; the price alone tells too
    for closed in (raw(1, sl="1.07000", tp="1.10000", state="closed", close_price="1.10002", comment="[tp]"),
                   raw(1, sl="1.07000", tp="1.10000", state="closed", close_price="1.10002")):
        sl, tp = legs([closed])
        assert (tp.state, tp.filled_quantity, tp.avg_fill_price) == (OrderState.FILLED, D(10000), D("1.10002"))
        assert sl.state is OrderState.CANCELLED and "take-profit closed it" in sl.reason
    sell = raw(1, side="sell", sl="1.10000", tp="1.07000", state="closed", close_price="1.10010")
    sl, tp = legs([sell])
    assert sl.state is OrderState.FILLED and tp.state is OrderState.CANCELLED


def test_a_close_by_an_order_is_not_an_exit_and_a_deleted_entry_ends_both_legs() -> None:
    manual = raw(1, sl="1.07000", state="closed", close_price="1.06000", close_client_id="closer")
    sl, _ = legs([manual])
    assert (sl.state, sl.filled_quantity) == (OrderState.CANCELLED, 0) and "without this exit" in sl.reason
    deleted = raw(1, type="limit", state="deleted", open_price=None, price="1.08000", sl="1.07", tp="1.09")
    sl, tp = legs([deleted])
    assert sl.state is tp.state is OrderState.CANCELLED and "deleted" in sl.reason
    assert legs([raw(1, client_id="other")]) == (None, None)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("retcode", "text"), [(130, "invalid stops"), (131, "invalid trade volume"),
                                               (132, "market is closed"), (134, "not enough money"),
                                               (4106, "unknown symbol")])
def test_refusals_become_rejections_with_mt4s_code_and_words(retcode: int, text: str) -> None:
    error = translate("place order", "cid-1", BridgeError(400, retcode, text, "why exactly"), attempts=1)
    assert isinstance(error, OrderRejected) and error.code == retcode
    assert f"{text} (retcode {retcode}): why exactly" in str(error)


@pytest.mark.parametrize("retcode", [136, 138, 146])
def test_requote_off_quotes_and_busy_are_retried_then_unavailable(retcode: int) -> None:
    exc = BridgeError(409, retcode, "requote")
    assert retried(exc)
    error = translate("place order", "cid-1", exc, attempts=4)
    assert type(error) is BrokerUnavailable and "nothing was executed" in str(error)


def test_what_may_have_executed_is_never_retried_and_auth_is_a_rejection() -> None:
    assert not retried(BridgeUnreachable("ReadTimeout", maybe_sent=True))
    assert retried(BridgeUnreachable("ConnectError", maybe_sent=False))
    assert not retried(BridgeError(503, None, "Service Unavailable"))
    assert type(translate("x", None, BridgeError(503, None, "down"), attempts=1)) is BrokerUnavailable
    auth = translate("account", None, BridgeError(401, 401, "unauthorized"), attempts=1)
    assert isinstance(auth, OrderRejected) and "MT4_API_TOKEN" in str(auth)
