"""The TWS simulator's back end without sockets: the order rules the wire tests rely on, and the
wire layouts checked field by field against ib_async's own decoder."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

import pytest

from venues.common.prices import PricePath
from venues.tws import messages as msg
from venues.tws.contracts import AAPL, ES_FUTURE, SPY, SPY_OPTION, query_from
from venues.tws.engine import (
    EngineEvent,
    ExecFilter,
    Executed,
    OrderNotice,
    OrderOpened,
    QuoteMoved,
    StatusChanged,
    TwsEngine,
    TwsError,
)
from venues.tws.orders import OrderRequest
from venues.tws.wire import decode, encode

D = Decimal


def engine(**knobs) -> tuple[TwsEngine, list[EngineEvent]]:
    knobs.setdefault("price_path", PricePath(seed=1, volatility=D(0)))
    knobs.setdefault("first_perm_id", 500)
    eng = TwsEngine(clock=lambda: 1_767_225_600.0, **knobs)
    events: list[EngineEvent] = []
    eng.subscribe(events.append)
    return eng, events


def req(order_id: int, action: str = "BUY", qty: str = "10", order_type: str = "MKT", **kw) -> OrderRequest:
    return OrderRequest(order_id=order_id, action=action, total_quantity=D(qty), order_type=order_type, **kw)


def test_market_order_fills_at_the_touch_in_slices_with_one_minimum_commission():
    eng, events = engine(partial_fill_steps=4)
    order = eng.place(1, SPY, req(1, qty="10"))
    fills = [e.execution for e in events if isinstance(e, Executed)]
    assert [f.shares for f in fills] == [D(2), D(3), D(2), D(3)]  # k/4 of the order after slice k
    assert {f.price for f in fills} == {D("600.01")}
    assert sum(f.commission for f in fills) == D("1.00") and fills[0].commission == D("1.00")
    assert order.status == "Filled" and isinstance(events[-1], OrderOpened)
    assert len({f.exec_id for f in fills}) == 4 and [f.cum_qty for f in fills] == [D(2), D(5), D(7), D(10)]


def test_order_ids_are_per_client_and_never_reused():
    eng, _ = engine()
    eng.place(1, SPY, req(5))
    assert eng.next_valid_id(1) == 6 and eng.next_valid_id(2) == 1
    with pytest.raises(TwsError) as dup:
        eng.place(1, SPY, req(3))
    assert dup.value.code == 103
    with pytest.raises(TwsError) as unknown:
        eng.place(1, query_from(["", "NOPE", "STK"]), req(7))
    assert unknown.value.code == 200 and eng.next_valid_id(1) == 8  # a rejected order uses its id up


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (req(1, qty="0"), 201),
        (req(1, qty="1.5"), 201),
        (req(1, order_type="LMT"), 201),
        (req(1, order_type="LMT", lmt_price=D("600.005")), 110),
        (req(1, order_type="STP", aux_price=D("-1")), 201),
        (req(1, order_type="TRAIL"), 201),
        (req(1, account="U999"), 201),
    ],
)
def test_rejections(request_, code):
    eng, events = engine()
    with pytest.raises(TwsError) as rejected:
        eng.place(1, SPY, request_)
    assert rejected.value.code == code and events == [] and eng.orders == {}


def test_future_prices_must_sit_on_its_quarter_tick():
    eng, _ = engine()
    with pytest.raises(TwsError) as off_tick:
        eng.place(1, ES_FUTURE, req(1, order_type="LMT", lmt_price=D("6000.10")))
    assert off_tick.value.code == 110
    assert eng.place(1, ES_FUTURE, req(2, order_type="LMT", lmt_price=D("5990.25"))).status == "Submitted"


def test_bracket_is_held_until_the_last_child_then_children_wait_for_the_parent():
    eng, events = engine()
    parent = eng.place(1, SPY, req(1, order_type="LMT", lmt_price=D("599.00"), transmit=False))
    tp = eng.place(1, SPY, req(2, "SELL", order_type="LMT", lmt_price=D("605.00"), parent_id=1, transmit=False))
    assert events == [] and eng.open_orders() == []  # invisible while held
    sl = eng.place(1, SPY, req(3, "SELL", order_type="STP", aux_price=D("595.00"), parent_id=1))
    assert [o.status for o in (parent, tp, sl)] == ["Submitted", "PreSubmitted", "PreSubmitted"]
    assert [type(e) for e in events] == [OrderOpened] * 3 and tp.why_held == "child"
    eng.set_price("SPY", D("598.99"))
    assert parent.status == "Filled" and tp.status == sl.status == "Submitted"
    eng.set_price("SPY", D("594.00"))
    assert sl.status == "Filled" and tp.status == "Cancelled"
    assert eng.positions[("DU1234567", SPY.con_id)].quantity == 0


def test_bracket_children_follow_partial_exits_so_the_position_nets_to_zero():
    eng, _ = engine(partial_fill_steps=2)
    eng.place(1, SPY, req(1, transmit=False))
    tp = eng.place(1, SPY, req(2, "SELL", order_type="LMT", lmt_price=D("605.00"), parent_id=1, transmit=False,
                                oca_group="b1", oca_type=1))
    sl = eng.place(1, SPY, req(3, "SELL", order_type="STP", aux_price=D("595.00"), parent_id=1,
                                oca_group="b1", oca_type=1))
    eng.set_price("SPY", D("605.01"))  # the take-profit rests: one slice per price step
    assert tp.filled == 5 and sl.total_quantity == 5 and sl.status == "Submitted"
    eng.set_price("SPY", D("594.00"))  # the stop takes what is left
    assert sl.status == "Filled" and sl.filled == 5 and tp.status == "Cancelled"
    assert eng.positions[("DU1234567", SPY.con_id)].quantity == 0


def test_cancelling_a_parent_cancels_its_children_with_202_each():
    eng, events = engine()
    eng.place(1, SPY, req(1, order_type="LMT", lmt_price=D("590.00"), transmit=False))
    eng.place(1, SPY, req(2, "SELL", order_type="LMT", lmt_price=D("610.00"), parent_id=1))
    eng.cancel(1, 1)
    assert [o.status for o in eng.orders.values()] == ["Cancelled", "Cancelled"]
    assert [(e.order.order_id, e.code) for e in events if isinstance(e, OrderNotice)] == [(1, 202), (2, 202)]
    with pytest.raises(TwsError) as again:
        eng.cancel(1, 1)
    assert again.value.code == 10148
    with pytest.raises(TwsError) as other_client:
        eng.cancel(2, 1)  # a client cancels only its own orders
    assert other_client.value.code == 10147


def test_ioc_keeps_what_fills_and_fok_fills_whole_or_not_at_all():
    eng, _ = engine(partial_fill_steps=2)
    ioc = eng.place(1, SPY, req(1, order_type="LMT", lmt_price=D("600.01"), tif="IOC"))
    assert (ioc.status, ioc.filled) == ("Cancelled", D(5))
    fok = eng.place(1, SPY, req(2, order_type="LMT", lmt_price=D("600.01"), tif="FOK"))
    assert (fok.status, fok.filled) == ("Filled", D(10))
    missed = eng.place(1, SPY, req(3, order_type="LMT", lmt_price=D("599.00"), tif="FOK"))
    assert (missed.status, missed.filled) == ("Cancelled", D(0))


def test_modifying_an_open_order_moves_its_limit():
    eng, events = engine()
    order = eng.place(1, SPY, req(1, order_type="LMT", lmt_price=D("590.00")))
    eng.place(1, SPY, req(1, order_type="LMT", lmt_price=D("600.01")))
    assert order.status == "Filled" and order.executions[0].price == D("600.01")
    assert sum(isinstance(e, OrderOpened) for e in events) == 3  # placed, modified, filled


def test_positions_realize_pnl_with_the_multiplier():
    eng, events = engine(spread_ticks=0)
    eng.place(1, SPY_OPTION, req(1, qty="2"))
    eng.set_price("SPY270115C500", D("125.00"))
    eng.place(1, SPY_OPTION, req(2, "SELL", qty="3"))
    pos = eng.positions[("DU1234567", SPY_OPTION.con_id)]
    assert pos.quantity == -1 and pos.realized_pnl == D("1000.00")  # (125 - 120) x 2 x 100
    assert pos.avg_cost == D("12500.00")  # the short opened by the flip, at 125 x 100
    closing = [e.execution for e in events if isinstance(e, Executed)][-1]
    assert closing.realized_pnl == D("1000.00") - closing.commission


def test_execution_ids_are_unique_per_account_and_filters_apply():
    eng, _ = engine(accounts=("DU1", "DU2"))
    eng.place(1, SPY, req(1, account="DU1"))
    eng.place(2, AAPL, req(1, "SELL", account="DU2"))
    ids = [e.exec_id for e in eng.executions]
    assert len(set(ids)) == 2 and ids[0].split(".")[0] != ids[1].split(".")[0]
    assert [e.account for e in eng.executions_for(ExecFilter(account="DU2"))] == ["DU2"]
    assert [e.client_id for e in eng.executions_for(ExecFilter(), client_id=1)] == [1]
    assert eng.executions_for(ExecFilter(side="SELL"))[0].instrument is AAPL
    assert eng.executions_for(ExecFilter(time="20990101-00:00:00")) == []


def test_two_simulators_do_not_share_perm_ids_or_exec_ids():
    one, two = TwsEngine(price_path=PricePath(volatility=D(0))), TwsEngine(price_path=PricePath(volatility=D(0)))
    a, b = one.place(1, SPY, req(1)), two.place(1, SPY, req(1))
    assert a.perm_id != b.perm_id and a.executions[0].exec_id != b.executions[0].exec_id


def test_status_events_for_a_resting_partial_fill():
    eng, events = engine(partial_fill_steps=2)
    eng.place(1, SPY, req(1, order_type="LMT", lmt_price=D("599.00")))
    events.clear()
    eng.set_price("SPY", D("598.99"))
    assert [type(e) for e in events if not isinstance(e, QuoteMoved)] == [Executed, StatusChanged]


# -- layouts against ib_async's decoder ----------------------------------------------------------------


class Recorder:
    """A stand-in for ib_async's wrapper that records what the real decoder hands it."""

    defaultTimezone = UTC

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str):
        return lambda *args: self.calls.append((name, args))


def decoded(fields) -> tuple[str, tuple]:
    from ib_async.decoder import Decoder

    recorder = Recorder()
    Decoder(recorder, 176).interpret(decode(encode(fields)[4:]))
    assert len(recorder.calls) == 1, recorder.calls
    return recorder.calls[0]


def test_layouts_decode_with_ib_async_at_176():
    eng, _ = engine()
    order = eng.place(3, SPY, req(9, order_type="LMT", lmt_price=D("600.01"), order_ref="ref-9", oca_group="g",
                                  exchange="SMART"))
    name, (order_id, contract, ib_order, state) = decoded(msg.open_order(order))
    assert name == "openOrder" and order_id == 9 and contract.conId == SPY.con_id
    assert (ib_order.orderRef, ib_order.permId, ib_order.clientId, ib_order.lmtPrice) == ("ref-9", 500, 3, 600.01)
    assert ib_order.ocaGroup == "g" and state.status == "Filled"

    name, (contract, ib_order, state) = decoded(msg.completed_order(order))
    assert name == "completedOrder" and ib_order.filledQuantity == 10 and state.completedStatus.startswith("Filled")

    name, args = decoded(msg.order_status(order))
    assert name == "orderStatus" and args[:3] == (9, "Filled", 10.0) and args[8] == 3

    execution = order.executions[0]
    name, (req_id, contract, ex) = decoded(msg.exec_details(-1, execution))
    assert name == "execDetails" and req_id == -1 and ex.execId == execution.exec_id and ex.orderRef == "ref-9"
    name, (report,) = decoded(msg.commission_report(execution))
    assert name == "commissionReport" and report.commission == 1.0 and report.realizedPNL > 1e300  # unset

    name, (req_id, details) = decoded(msg.contract_details(4, ES_FUTURE, "CME"))
    assert name == "contractDetails" and details.contract.lastTradeDateOrContractMonth == "20261218"
    assert details.minTick == 0.25 and details.contract.multiplier == "50"

    pos = eng.positions[("DU1234567", SPY.con_id)]
    name, (account, contract, size, avg) = decoded(msg.position(pos))
    assert (name, account, size, avg) == ("position", "DU1234567", 10.0, 600.01)
    name, args = decoded(msg.portfolio_value(pos, D("600")))
    assert name == "updatePortfolio" and args[-1] == "DU1234567"
    name, args = decoded(msg.error(9, 202, "Order Canceled - reason:"))
    assert (name, args) == ("error", (9, 202, "Order Canceled - reason:", ""))
