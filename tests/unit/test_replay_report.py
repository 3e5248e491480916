"""The replay report (issue 17, topic replay): summary.json, fills.csv, the equity curve, the chart
and report.html, from a replay of records handed in without Kafka."""

from __future__ import annotations

import json
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest

from replay.report import EQUITY_PNG, MATPLOTLIB_MISSING, dec, equity_curve, write_report
from tests.contract.test_replay import Tables
from tests.unit.test_replay_engine import WINDOW, _replay

META = {"run_id": "r1", "range": WINDOW.as_dict(), "generated_at": "now"}


def test_decimals_are_plain_strings() -> None:
    assert [dec(D(x)) for x in ("1E+2", "0E-10", "-0", "1.2300", "-0.000216")] == ["100", "0", "0", "1.23", "-0.000216"]


async def test_the_report_files(tmp_path: Path) -> None:
    outcome, prices = await _replay(tmp_path)
    files = write_report(tmp_path / "report", outcome, WINDOW, prices, META)
    summary = json.loads(files.summary.read_text())
    assert set(summary) >= {"signals", "orders", "fills", "positions", "pnl", "meta"}
    assert summary["signals"] == {"read": 12, "valid": 9, "invalid": 3}
    assert summary["orders"] == {"EXPIRED": 1, "FILLED": 5, "REJECTED": 1, "SUBMITTED": 1}
    assert summary["fills"] == 5 and summary["meta"] == META
    btc = summary["positions"]["BTC-USDT"]
    # average cost: 0.5 @ 61061 (09:30) and 1 @ 59059 (the limit, 11:00), then 0.5 sold @ 61938 (13:00)
    average = (D("0.5") * D("61061") + D("59059")) / D("1.5")
    assert btc["quantity"] == "1" and abs(D(btc["avg_price"]) - average) < D("1e-20")
    assert abs(D(btc["realized_pnl"]) - D("0.5") * (D("61938") - average)) < D("1e-20")
    # BTC-USDT held 1 @ avg, marked at the last price before 17:00 (63000, the 18:00 one is after the range)
    assert summary["marks"]["BTC-USDT"] == "63000"
    assert summary["marks"]["AAPL"] == "209.79"  # no price file entry: its last fill price
    unrealized = (D(63000) - D(btc["avg_price"])) * 1 + (D("209.79") - D(summary["positions"]["AAPL"]["avg_price"])) * 6
    assert abs(D(summary["pnl"]["unrealized"]) - unrealized) < D("1e-20")
    assert summary["pnl"]["fees"] == "0"
    assert list(summary["order_reasons"]) == ["EXPIRED", "REJECTED"]

    rows = files.fills.read_text().splitlines()
    assert rows[0] == "ts,client_order_id,symbol,side,quantity,price,commission"
    assert rows[1].startswith("2025-06-02T09:30:00Z,") and rows[1].endswith(",BTC-USDT,BUY,0.5,61061,0")
    assert len(rows) == 6

    points = equity_curve(outcome.fills, WINDOW, prices)
    assert points[0].ts == WINDOW.start and points[0].equity == 0
    assert points[-1].ts == WINDOW.end
    assert abs(points[-1].equity - (D(summary["pnl"]["realized"]) + unrealized)) < D("1e-20")
    assert files.equity_csv.read_text().splitlines()[-1] == f"2025-06-02T17:00:00Z,{dec(points[-1].equity)}"

    assert files.chart is not None and files.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tables = Tables()
    tables.feed(files.html.read_text())
    assert tables.tables["Orders by state"][1] == [["EXPIRED", "1"], ["FILLED", "5"], ["REJECTED", "1"],
                                                   ["SUBMITTED", "1"]]
    assert len(tables.tables["Malformed records"][1]) == 3
    assert tables.images[0].startswith("data:image/png;base64,")


async def test_without_matplotlib_the_other_files_are_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, prices = await _replay(tmp_path)
    directory = tmp_path / "report"
    directory.mkdir()
    (directory / EQUITY_PNG).write_bytes(b"a chart from an earlier run")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError, as when absent
    files = write_report(directory, outcome, WINDOW, prices, META)
    assert files.chart is None and not (directory / EQUITY_PNG).exists()
    assert files.summary.exists() and files.fills.exists() and files.equity_csv.exists()
    page = files.html.read_text()
    assert "matplotlib is not installed" in page and MATPLOTLIB_MISSING.startswith("matplotlib is not installed")
    tables = Tables()
    tables.feed(page)
    assert tables.images == [] and "Positions" in tables.tables
