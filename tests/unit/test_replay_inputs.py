"""What a replay is given (issue 17, topic replay): the range, the price file, the speed, the run
id, and the layer the replay package sits in."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from execution.clock import ManualClock
from replay.prices import PriceFileError, RecordedPrices
from replay.runner import OptionError, ReplayOptions, SpeedError, default_run_id, parse_speed
from replay.window import RangeError, ReplayRange, parse_instant
from tests.unit.test_layering import DEV_ONLY, modules, violations

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_bounds_need_a_timezone_and_the_range_is_half_open() -> None:
    assert parse_instant("2026-03-02T10:30:00+01:00") == T0
    assert parse_instant("2026-03-02T09:30:00Z") == T0
    with pytest.raises(RangeError, match="no timezone"):
        parse_instant("2026-03-02T09:30:00")
    with pytest.raises(RangeError, match="not an ISO 8601"):
        parse_instant("yesterday")
    with pytest.raises(RangeError, match="empty range"):
        ReplayRange.parse("2026-03-02T10:00:00Z", "2026-03-02T10:00:00Z")
    window = ReplayRange.parse("2026-03-02T09:30:00.0005Z", "2026-03-02T10:00:00Z")
    start_ms = window.start_ms
    assert window.position(start_ms - 1) == -1 and window.position(start_ms) == 0  # 09:30:00.001 is the first
    end_ms = start_ms - 1 + 30 * 60 * 1000  # 10:00:00.000
    assert window.position(end_ms - 1) == 0 and window.position(end_ms) == 1
    assert window.position(end_ms + 60_000, slack_ms=60_000) == 1  # exactly the slack past: not yet
    assert window.position(end_ms + 60_001, slack_ms=60_000) == 2


def _prices(tmp_path: Path, text: str, clock: ManualClock | None = None) -> RecordedPrices:
    path = tmp_path / "prices.csv"
    path.write_text(text)
    return RecordedPrices.from_csv(path, clock or ManualClock(T0))


async def test_a_quote_is_the_last_price_at_or_before_the_clock(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    prices = _prices(tmp_path, "ts,symbol,price\n"
                               "2026-03-02T09:31:00Z,btcusdt,101.5\n"  # unsorted rows, any spelling
                               "2026-03-02T09:30:00Z,BTC/USDT,100\n"
                               "2026-03-02T09:30:00Z,BTC-USDT,100.25\n"  # same instant: the later row wins
                               "1772443860,SPY,600\n", clock)         # epoch seconds: 09:31:00Z
    assert prices.symbols == ["BTC-USDT", "SPY"] and len(prices) == 4
    assert await prices.quote("BTC-USDT") is None  # nothing recorded yet at 09:00
    clock.set(T0)
    quote = await prices.quote("BTC-USDT")
    assert quote is not None and quote.mid == D("100.25")
    clock.set(datetime(2026, 3, 2, 9, 45, tzinfo=UTC))
    assert (await prices.quote("BTC-USDT")).mid == D("101.5")  # type: ignore[union-attr]
    assert (await prices.quote("SPY")).mid == D("600")  # type: ignore[union-attr]
    assert prices.quote_at("BTC-USDT", datetime(2026, 3, 2, 9, 31, tzinfo=UTC), inclusive=False).mid == D("100.25")  # type: ignore[union-attr]
    assert prices.ticks(T0, datetime(2026, 3, 2, 9, 31, tzinfo=UTC)) == [datetime(2026, 3, 2, 9, 31, tzinfo=UTC)]
    assert prices.ticks(T0, datetime(2026, 3, 2, 9, 31, tzinfo=UTC), inclusive=False) == []


async def test_bid_ask_files_quote_the_mid(tmp_path: Path) -> None:
    prices = _prices(tmp_path, "TS,Symbol,Bid,Ask,venue\n2026-03-02T09:00:00Z,EUR/USD,1.0841,1.0843,x\n\n")
    quote = await prices.quote("EURUSD")
    assert quote is not None and (quote.bid, quote.ask, quote.mid) == (D("1.0841"), D("1.0843"), D("1.0842"))


@pytest.mark.parametrize(("text", "error"), [
    ("time,symbol,price\n", "must name ts and symbol"),
    ("ts,symbol,last\n", "needs a price column"),
    ("ts,symbol,price\n2026-03-02T09:00:00,SPY,1\n", "line 2: ts .* no timezone"),
    ("ts,symbol,price\n2026-03-02T09:00:00Z,SPY,1\n2026-03-02T09:01:00Z,SPY,-1\n", "line 3: price '-1'"),
    ("ts,symbol,price\n2026-03-02T09:00:00Z,SPY,NaN\n", "positive finite"),
    ("ts,symbol,price\n2026-03-02T09:00:00Z,SPY,1,000\n", None),  # an extra unnamed cell is ignored
    ("ts,symbol,bid,ask\n2026-03-02T09:00:00Z,SPY,2,1\n", "bid 2 above ask 1"),
    ("ts,symbol,price\n2026-03-02T09:00:00Z,,1\n", "no symbol"),
])
def test_a_bad_price_file_names_the_line(tmp_path: Path, text: str, error: str | None) -> None:
    if error is None:
        assert len(_prices(tmp_path, text)) == 1
        return
    with pytest.raises(PriceFileError, match=error):
        _prices(tmp_path, text)


def test_speed() -> None:
    assert parse_speed("max") is None and parse_speed("realtime") == 1.0
    assert parse_speed("10x") == 10.0 and parse_speed("0.5X") == 0.5
    for bad in ("fast", "0x", "-2x", "infx", "nanx"):
        with pytest.raises(SpeedError):
            parse_speed(bad)


def test_the_run_id_names_topic_range_and_price_file_contents() -> None:
    window = ReplayRange.parse("2026-03-02T09:00:00Z", "2026-03-02T17:00:00Z")
    same = ReplayRange.parse("2026-03-02T10:00:00+01:00", "2026-03-02T18:00:00+01:00")
    assert default_run_id("signals", window, None) == default_run_id("signals", same, None)
    ids = {default_run_id("signals", window, None), default_run_id("other", window, None),
           default_run_id("signals", window, "ab" * 32),
           default_run_id("signals", ReplayRange.parse("2026-03-02T09:00:00Z", "2026-03-02T17:00:01Z"), None)}
    assert len(ids) == 4 and all(len(i) == 12 for i in ids)


@pytest.mark.parametrize(("options", "error"), [
    ({"run_id": "../../etc"}, "--run-id"), ({"run_id": ".hidden"}, "--run-id"), ({"run_id": "a/b"}, "--run-id"),
    ({"slack": -1.0}, "--slack"), ({"quiet": 0.0}, "--quiet"), ({"store": "sqlite"}, "--store"),
])
def test_options_that_cannot_work_are_refused(options: dict[str, object], error: str) -> None:
    window = ReplayRange.parse("2026-03-02T09:00:00Z", "2026-03-02T17:00:00Z")
    with pytest.raises(OptionError, match=error):
        ReplayOptions(window, **options)  # type: ignore[arg-type]
    assert ReplayOptions(window, run_id="demo-3fa1c0.v2").run_id == "demo-3fa1c0.v2"


def test_the_replay_package_imports_no_dev_tool_simulator_or_test() -> None:
    """Production code (``superintel replay`` ships in a production install) by the layering rule."""
    assert modules("replay"), "no modules found: the test would pass on nothing"
    assert violations(("replay",), DEV_ONLY) == []
