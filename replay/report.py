"""The replay's report: ``summary.json``, ``fills.csv``, ``equity.csv``, ``equity.png``, ``report.html``.

Everything but ``summary.json``'s ``meta`` object is a function of the replayed records, the price
file and the settings, so replaying the same range twice writes identical files (the chart's
pixels included, not its PNG metadata): a backtest can be diffed. Decimals are strings, exactly
as the pipeline computed them; floats appear only in the chart.

``summary.json``:

* ``signals``: ``read`` (records in the range), ``valid`` (routed), ``invalid`` (malformed)
* ``orders``: order count per state; ``order_reasons``: per not-filled terminal state, the reasons
* ``fills``: how many; ``positions``: ``{SYMBOL: {quantity, avg_price, realized_pnl}}`` as the store
  holds them (average-cost, canonical symbols)
* ``pnl``: ``realized`` (sum over positions), ``unrealized`` (each open position marked at the
  last price known before the range end, else at its last fill price), ``fees`` (commissions)
* ``malformed``: the first ``MALFORMED_LISTED`` malformed records, where they are and why
* ``meta``: run id, generated at, range, topic, price file, store, versions, how reading ended

The equity curve is realized + unrealized - fees, sampled at every fill and price instant (at most
``CURVE_POINTS`` of the latter), from the applied fills with the stores' position arithmetic.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from execution.fills import DECIMAL_PRECISION, PositionKey, PositionState
from replay.engine import ReplayOutcome
from replay.prices import RecordedPrices
from replay.window import ReplayRange, iso
from schemas import Fill, OrderState, Position

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
FILLS = "fills.csv"
EQUITY_CSV = "equity.csv"
EQUITY_PNG = "equity.png"
HTML = "report.html"
FILL_COLUMNS = ("ts", "client_order_id", "symbol", "side", "quantity", "price", "commission")
MALFORMED_LISTED = 1000
CURVE_POINTS = 2000
#: fills listed in report.html (fills.csv has them all)
HTML_FILLS = 2000
MATPLOTLIB_MISSING = ("matplotlib is not installed: equity.png not drawn (install the report extra: "
                      "pip install 'superintel-execution[report]'); the other report files are written")


def dec(value: Decimal) -> str:
    """A decimal as a plain string, without exponent or trailing zeros (``-0`` is ``0``)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


@dataclass(frozen=True, slots=True)
class EquityPoint:
    ts: datetime
    equity: Decimal


@dataclass(frozen=True, slots=True)
class ReportFiles:
    directory: Path
    summary: Path
    fills: Path
    equity_csv: Path
    html: Path
    #: None when matplotlib is missing
    chart: Path | None


def _mark(symbol: str, at: datetime, prices: RecordedPrices | None, last_fill: Mapping[str, Decimal],
          *, inclusive: bool) -> Decimal | None:
    quote = prices.quote_at(symbol, at, inclusive=inclusive) if prices is not None else None
    if quote is not None and quote.mid is not None:
        return quote.mid
    return last_fill.get(symbol)


def _unrealized(held: Mapping[PositionKey, PositionState], marks: Mapping[str, Decimal | None]) -> Decimal:
    total = Decimal(0)
    with localcontext(prec=DECIMAL_PRECISION):  # the books' precision: only their averages ever rounded
        for (_, symbol), position in held.items():
            mark = marks.get(symbol)
            if position.quantity != 0 and mark is not None:
                total += (mark - position.avg_price) * position.quantity
    return total


def last_fill_prices(fills: Sequence[Fill]) -> dict[str, Decimal]:
    last: dict[str, Decimal] = {}
    for fill in fills:
        last[fill.symbol] = fill.price
    return last


def build_summary(outcome: ReplayOutcome, window: ReplayRange, prices: RecordedPrices | None,
                  meta: Mapping[str, Any]) -> dict[str, Any]:
    states = Counter(order.state.value for order in outcome.orders)
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for order in outcome.orders:
        if order.state in (OrderState.REJECTED, OrderState.EXPIRED, OrderState.CANCELLED):
            reasons[order.state.value][order.reason] += 1
    last_fill = last_fill_prices(outcome.fills)
    held = {(p.broker, p.symbol): PositionState(p.quantity, p.avg_price, p.realized_pnl) for p in outcome.positions}
    marks = {p.symbol: _mark(p.symbol, window.end, prices, last_fill, inclusive=False) for p in outcome.positions}
    return {
        "signals": {"read": outcome.read, "valid": outcome.valid, "invalid": len(outcome.malformed)},
        "orders": dict(sorted(states.items())),
        "order_reasons": {state: dict(sorted(counts.items())) for state, counts in sorted(reasons.items())},
        "fills": len(outcome.fills),
        "positions": _positions(outcome.positions),
        "pnl": {
            "realized": dec(sum((p.realized_pnl for p in outcome.positions), Decimal(0))),
            "unrealized": dec(_unrealized(held, marks)),
            "fees": dec(sum((f.commission for f in outcome.fills), Decimal(0))),
        },
        "marks": {symbol: dec(mark) for symbol, mark in sorted(marks.items())
                  if mark is not None and held_quantity(outcome.positions, symbol) != 0},
        "malformed": [{"partition": m.partition, "offset": m.offset, "ts": iso(m.ts), "reason": m.reason}
                      for m in outcome.malformed[:MALFORMED_LISTED]],
        "meta": dict(meta),
    }


def held_quantity(positions: Sequence[Position], symbol: str) -> Decimal:
    return sum((p.quantity for p in positions if p.symbol == symbol), Decimal(0))


def _positions(positions: Sequence[Position]) -> dict[str, dict[str, str]]:
    """By canonical symbol; a symbol held at two brokers (never in a replay, where everything is
    paper) is listed once per broker."""
    symbols = Counter(p.symbol for p in positions)
    out: dict[str, dict[str, str]] = {}
    for p in sorted(positions, key=lambda p: (p.symbol, p.broker.value)):
        key = p.symbol if symbols[p.symbol] == 1 else f"{p.symbol}@{p.broker.value}"
        out[key] = {"quantity": dec(p.quantity), "avg_price": dec(p.avg_price), "realized_pnl": dec(p.realized_pnl)}
    return out


def sorted_fills(fills: Sequence[Fill]) -> list[Fill]:
    return sorted(fills, key=lambda f: (f.ts, f.client_order_id))


def fills_csv(fills: Sequence[Fill]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FILL_COLUMNS)
    for f in sorted_fills(fills):
        writer.writerow([iso(f.ts), f.client_order_id, f.symbol, f.side.value, dec(f.quantity), dec(f.price),
                         dec(f.commission)])
    return out.getvalue()


def equity_curve(fills: Sequence[Fill], window: ReplayRange, prices: RecordedPrices | None) -> list[EquityPoint]:
    """Equity (realized + unrealized - fees) at the range start, after every fill, at price
    instants in the range (thinned to ``CURVE_POINTS``) and at the range end."""
    ticks = prices.ticks(window.start, window.end, inclusive=False) if prices is not None else []
    if len(ticks) > CURVE_POINTS:
        step = -(-len(ticks) // CURVE_POINTS)
        ticks = ticks[::step]
    ordered = sorted_fills(fills)
    times = sorted({window.start, *ticks, *(f.ts for f in ordered)})
    held: dict[PositionKey, PositionState] = {}
    last_fill: dict[str, Decimal] = {}
    fees = Decimal(0)
    points: list[EquityPoint] = []
    index = 0

    def equity(at: datetime, *, inclusive: bool) -> Decimal:
        marks = {symbol: _mark(symbol, at, prices, last_fill, inclusive=inclusive) for _, symbol in held}
        realized = sum((p.realized_pnl for p in held.values()), Decimal(0))
        return realized + _unrealized(held, marks) - fees

    for at in times:
        while index < len(ordered) and ordered[index].ts <= at:
            fill = ordered[index]
            key = (fill.broker, fill.symbol)
            held[key] = held.get(key, PositionState()).apply(fill.signed_quantity, fill.price)
            last_fill[fill.symbol] = fill.price
            fees += fill.commission
            index += 1
        points.append(EquityPoint(at, equity(at, inclusive=True)))
    points.append(EquityPoint(window.end, equity(window.end, inclusive=False)))
    return points


def equity_csv(points: Sequence[EquityPoint]) -> str:
    return "ts,equity\n" + "".join(f"{iso(p.ts)},{dec(p.equity)}\n" for p in points)


def draw_equity(points: Sequence[EquityPoint], path: Path, title: str) -> bool:
    """The equity curve as a PNG (matplotlib's Agg canvas, no display, no pyplot state);
    False when matplotlib is not installed (a production install)."""
    try:
        import numpy
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    times = numpy.array([p.ts.astimezone(UTC).replace(tzinfo=None) for p in points], dtype="datetime64[us]")
    axes.step(times, [float(p.equity) for p in points], where="post", color="#1f6feb")
    axes.set_xlabel("recorded time (UTC)")
    axes.axhline(0, color="#888888", linewidth=0.8)
    axes.set_title(title)
    axes.set_ylabel("equity (realized + unrealized - fees)")
    axes.grid(True, alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png", metadata={"Software": None})
    return True


def _table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[object]], note: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">none</td></tr>'
    extra = f"<p>{html.escape(note)}</p>" if note else ""
    return f"<h2>{html.escape(caption)}</h2>{extra}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"


def report_html(summary: Mapping[str, Any], fills: Sequence[Fill], chart: bytes | None) -> str:
    meta = summary["meta"]
    window = meta.get("range", {})
    title = f"Replay {meta.get('run_id', '')}: {window.get('from', '')} to {window.get('to', '')}"
    signals, pnl = summary["signals"], summary["pnl"]
    parts = [
        _table("Overview", ("measure", "value"), [
            ("signals read (in range)", signals["read"]), ("valid signals", signals["valid"]),
            ("malformed records", signals["invalid"]), ("fills", summary["fills"]),
            ("realized P&L", pnl["realized"]), ("unrealized P&L", pnl["unrealized"]), ("fees", pnl["fees"]),
        ]),
        _table("Orders by state", ("state", "orders"), list(summary["orders"].items())),
        _table("Positions", ("symbol", "quantity", "avg_price", "realized_pnl", "mark"), [
            (symbol, p["quantity"], p["avg_price"], p["realized_pnl"], summary["marks"].get(symbol, ""))
            for symbol, p in summary["positions"].items()]),
    ]
    if chart is not None:
        data = base64.b64encode(chart).decode()
        parts.append(f'<h2>Equity curve</h2><img alt="equity curve" src="data:image/png;base64,{data}">\n')
    else:
        parts.append(f"<h2>Equity curve</h2><p>{html.escape(MATPLOTLIB_MISSING)}; see {EQUITY_CSV}.</p>\n")
    reasons = [(state, reason, n) for state, counts in summary["order_reasons"].items() for reason, n in counts.items()]
    parts.append(_table("Orders not filled", ("state", "reason", "orders"), reasons))
    listed = sorted_fills(fills)
    parts.append(_table("Fills", FILL_COLUMNS, [
        (iso(f.ts), f.client_order_id, f.symbol, f.side.value, dec(f.quantity), dec(f.price), dec(f.commission))
        for f in listed[:HTML_FILLS]],
        note=f"first {HTML_FILLS} of {len(listed)}; all in {FILLS}" if len(listed) > HTML_FILLS else ""))
    parts.append(_table("Malformed records", ("partition", "offset", "ts", "reason"), [
        (m["partition"], m["offset"], m["ts"], m["reason"]) for m in summary["malformed"]]))
    parts.append(_table("Run", ("key", "value"), [
        (key, json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value)
        for key, value in meta.items()]))
    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
             "margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}"
             "th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{''.join(parts)}</body></html>\n")


def write_report(directory: Path, outcome: ReplayOutcome, window: ReplayRange, prices: RecordedPrices | None,
                 meta: Mapping[str, Any]) -> ReportFiles:
    """Write every report file into ``directory`` (created; this run's earlier files replaced)."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = build_summary(outcome, window, prices, meta)
    points = equity_curve(outcome.fills, window, prices)
    paths = ReportFiles(directory, directory / SUMMARY, directory / FILLS, directory / EQUITY_CSV,
                        directory / HTML, directory / EQUITY_PNG)
    paths.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    paths.fills.write_text(fills_csv(outcome.fills), encoding="utf-8")
    paths.equity_csv.write_text(equity_csv(points), encoding="utf-8")
    chart_path = directory / EQUITY_PNG
    chart_path.unlink(missing_ok=True)  # a chart from an earlier run must not pass for this one's
    drawn = draw_equity(points, chart_path, f"equity, {iso(window.start)} to {iso(window.end)}")
    if not drawn:
        log.warning(MATPLOTLIB_MISSING)
    paths.html.write_text(report_html(summary, outcome.fills, chart_path.read_bytes() if drawn else None),
                          encoding="utf-8")
    return ReportFiles(directory, paths.summary, paths.fills, paths.equity_csv, paths.html,
                       chart_path if drawn else None)
