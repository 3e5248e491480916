"""The simulator toolkit's pure parts: the fault model, the price book, the shared flags."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal

import pytest

from venues.common.cli import add_fault_flags, add_price_flags, faults_from_args, price_path_from_args
from venues.common.faults import Fault, Faults, Op
from venues.common.prices import PriceBook, PricePath
from venues.common.stats import SimStats
from venues.common.tcp_server import default_control_port

D = Decimal


def decisions(faults: Faults, op: Op = Op.MARKET_DATA, key: str = "GET /x", n: int = 200) -> list[Fault]:
    return [faults.decide(op, key) for _ in range(n)]


def test_no_faults_by_default():
    assert set(decisions(Faults())) == {Fault.NONE}
    assert set(decisions(Faults(), Op.PLACEMENT)) == {Fault.NONE}


def test_rates_follow_the_seed_and_only_placements_are_lost():
    a = decisions(Faults(fail_rate=0.3, seed=4))
    assert a == decisions(Faults(fail_rate=0.3, seed=4))
    assert a != decisions(Faults(fail_rate=0.3, seed=5))
    assert 30 < a.count(Fault.FAIL) < 90 and set(a) == {Fault.NONE, Fault.FAIL}
    assert set(decisions(Faults(lose_rate=1.0), Op.TRADING)) == {Fault.NONE}
    assert set(decisions(Faults(lose_rate=1.0), Op.PLACEMENT)) == {Fault.LOSE}
    assert set(decisions(Faults(fail_rate=1.0, lose_rate=1.0), Op.PLACEMENT)) == {Fault.FAIL}
    assert set(decisions(Faults(fail_rate=1.0), Op.CONNECT)) == {Fault.FAIL}


def test_draws_do_not_depend_on_the_other_settings():
    """A one-shot counter or a different lose rate does not shift which requests the fail rate hits."""
    plain = decisions(Faults(fail_rate=0.5, seed=1), Op.PLACEMENT)
    with_counter = decisions(Faults(fail_rate=0.5, seed=1, drop_next=1), Op.PLACEMENT)
    assert with_counter[0] is Fault.DROP and with_counter[1:] == plain[1:]
    lossy = decisions(Faults(fail_rate=0.5, lose_rate=0.5, seed=1), Op.PLACEMENT)
    assert [f is Fault.FAIL for f in lossy] == [f is Fault.FAIL for f in plain]


def test_one_shot_counters_come_first_and_respect_match():
    faults = Faults(drop_next=1, fail_next=1, lose_response_next=1, match="POST /order")
    assert faults.decide(Op.MARKET_DATA, "GET /time") is Fault.NONE
    assert [faults.decide(Op.PLACEMENT, "POST /order") for _ in range(4)] == [
        Fault.DROP, Fault.FAIL, Fault.LOSE, Fault.NONE]
    assert (faults.drop_next, faults.fail_next, faults.lose_response_next) == (0, 0, 0)


def test_a_connection_has_no_response_to_lose():
    faults = Faults(lose_response_next=1)
    assert faults.decide(Op.CONNECT, "CONNECT") is Fault.NONE
    assert faults.decide(Op.PLACEMENT, "ORDER") is Fault.LOSE


def test_update_is_partial_validated_and_all_or_nothing():
    faults = Faults(latency=0.5, fail_rate=0.1)
    faults.update({"lose_rate": 0.2})
    assert (faults.latency, faults.fail_rate, faults.lose_rate) == (0.5, 0.1, 0.2)
    faults.update({"fail_rate": 1})
    assert faults.fail_rate == 1.0 and isinstance(faults.fail_rate, float)
    for bad in ({"fail_rate": 1.01}, {"lose_rate": -0.1}, {"latency": float("nan")}, {"fail_next": -1},
                {"drop_next": True}, {"seed": "1"}, {"match": 1}, {"latency": "1"}, {"nope": 1},
                {"latency": 0.1, "fail_rate": 7}):
        with pytest.raises(ValueError):
            faults.update(bad)
    assert faults.to_json() == {"latency": 0.5, "fail_rate": 1.0, "lose_rate": 0.2, "seed": 0, "fail_next": 0,
                                "drop_next": 0, "lose_response_next": 0, "match": None}
    with pytest.raises(ValueError):
        Faults(fail_rate=2)


def test_update_with_a_seed_restarts_the_draws():
    faults = Faults(fail_rate=0.5, seed=9)
    first = decisions(faults, n=50)
    faults.update({"seed": 9})
    assert decisions(faults, n=50) == first


def test_stats_json():
    stats = SimStats()
    stats.count_request("GET /a")
    stats.count_request("GET /a")
    stats.count_fault("fail")
    stats.count_error(-1022)
    data = stats.to_json()
    assert data["requests"] == 2 and data["by_endpoint"] == {"GET /a": 2}
    assert data["faults"] == {"latency": 0, "fail": 1, "drop": 0, "lose": 0} and data["faults_injected"] == 1
    assert data["errors"] == {"-1022": 1}
    json.dumps(data)


def book(path: PricePath, **kw) -> PriceBook:
    clock = iter(range(1_000, 10**9, 1_000))
    return PriceBook(path, {"AAA": D("0.01"), "BBB": D("0.5")}, now_ms=lambda: next(clock), **kw)


def test_price_book_walks_reproducibly_on_the_tick_grid():
    a, b = book(PricePath(seed=3, volatility=D("0.01"))), book(PricePath(seed=3, volatility=D("0.01")))
    seen = []
    for _ in range(30):
        a.step()
        b.step()
        assert a.price("AAA") == b.price("AAA") and a.price("BBB") == b.price("BBB")
        seen.append(a.price("BBB"))
    assert len(set(seen)) > 1 and all(p % D("0.5") == 0 for p in seen)
    other = book(PricePath(seed=4, volatility=D("0.01")))
    other_seen = []
    for _ in range(30):
        other.step()
        other_seen.append(other.price("BBB"))
    assert other_seen != seen
    assert a.price_at("AAA", 0) == D(100)  # before history: the first price (the fallback start)


def test_price_book_start_prices_series_hold_and_history():
    prices = book(PricePath(start={"AAA": D("10.019")}, series={"BBB": [D("5"), D("6.2"), D("7")]}),
                  default_start={"AAA": D(1), "BBB": D(2)})
    assert prices.price("AAA") == D("10.01")  # the path's start, floored onto the tick
    assert prices.price("BBB") == D(5)
    prices.step()
    prices.step()
    prices.step()
    assert prices.price("BBB") == D(7)  # 6.2 floored to 6.0, then 7, then held at the last
    assert [p for _, p in prices.history("BBB")] == [D(5), D(6), D(7), D(7)]
    assert prices.set("AAA", D("9.999")) == D("9.99")
    prices.step()
    assert prices.price("AAA") == D("9.99")  # held
    prices.release("AAA")
    ts, _ = prices.history("BBB")[1]
    assert prices.price_at("BBB", ts) == D(6) and prices.price_at("BBB", ts - 1) == D(5)
    assert "AAA" in prices and "ZZZ" not in prices and prices.symbols == ["AAA", "BBB"]


def test_control_port_defaults_to_the_next_port():
    assert default_control_port(7496) == 7497
    assert default_control_port(0) == 0


def test_shared_flags_build_faults_and_price_path(tmp_path):
    series = tmp_path / "series.json"
    series.write_text(json.dumps({"BTCUSDT": ["60000", 60100.5]}))
    parser = argparse.ArgumentParser()
    add_fault_flags(parser)
    add_price_flags(parser)
    args = parser.parse_args(["--latency", "0.2", "--fail-rate", "0.1", "--lose-rate", "0.3", "--seed", "8",
                              "--price-seed", "9", "--volatility", "0", "--price", "ETHUSDT=2500",
                              "--price-series", str(series)])
    faults = faults_from_args(args)
    assert (faults.latency, faults.fail_rate, faults.lose_rate, faults.seed) == (0.2, 0.1, 0.3, 8)
    path = price_path_from_args(args)
    assert path.seed == 9 and path.volatility == 0 and path.start == {"ETHUSDT": D(2500)}
    assert path.series == {"BTCUSDT": [D("60000"), D("60100.5")]}
    for bad in (["--fail-rate", "1.1"], ["--lose-rate", "-0.5"], ["--latency", "inf"], ["--price", "X"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
