"""The simulated TWS's instrument table and how a request's contract is matched against it.

Each ``Instrument`` is one IB contract with a stable ``con_id`` (the simulator's own numbers;
SPY's and AAPL's happen to be IB's real ones) and a ``key``, the name its price path and the
command line's ``--price KEY=PRICE`` use. The defaults cover each security type the IBKR adapter
trades: stocks (SPY on ARCA, GBTC on ARCA, AAPL on NASDAQ, all SMART-routed in USD), an OCC-style
SPY option (2027-01-15 500 call, multiplier 100), an ES future (December 2026, CME, multiplier 50,
local symbol ESZ6) and EURUSD on IDEALPRO.

Matching follows what TWS does with ``reqContractDetails`` and ``placeOrder``: every field the
request sets must agree, the empty ones match anything. A ``conId`` alone is enough. A contract
month (``202612``) matches the full expiry (``20261218``); ``C``/``CALL`` and ``P``/``PUT`` are one
right; SMART matches every instrument routed through it; the strike compares as a number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

#: the query fields of a contract as the client sends them (conId first), by name
ContractQuery = dict[str, str]

CONTRACT_FIELDS: tuple[str, ...] = (
    "conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right", "multiplier",
    "exchange", "primaryExchange", "currency", "localSymbol", "tradingClass",
)

_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}


@dataclass(frozen=True, slots=True)
class Instrument:
    """One contract the simulated TWS knows."""

    key: str
    con_id: int
    symbol: str
    sec_type: str
    currency: str
    #: where it is listed (what an execution reports) and the exchanges an order may name
    primary_exchange: str
    exchanges: tuple[str, ...]
    min_tick: Decimal
    start_price: Decimal
    long_name: str
    local_symbol: str = ""
    trading_class: str = ""
    #: full last trade date (YYYYMMDD) for options and futures
    expiry: str = ""
    strike: Decimal = Decimal(0)
    right: str = ""
    multiplier: str = ""
    #: the smallest order size and its increment
    size_increment: Decimal = Decimal(1)
    under_con_id: int = 0
    industry: str = ""
    category: str = ""
    time_zone: str = "US/Eastern"
    order_types: str = "ACTIVETIM,AD,ALERT,ALLOC,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,MTL,OCA,STP,STP LMT,TRAIL,WHATIF"
    market_rule_ids: str = "26"
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def contract_month(self) -> str:
        return self.expiry[:6]

    @property
    def listing_exchange(self) -> str:
        """The exchange a contract detail names when the request named none (SMART where routed)."""
        return self.exchanges[0]

    @property
    def multiplier_value(self) -> Decimal:
        """What one unit of quantity is worth in price units (100 for the option, 50 for ES)."""
        return Decimal(self.multiplier) if self.multiplier else Decimal(1)

    def matches(self, query: ContractQuery) -> bool:
        """Whether a request's contract names this instrument (empty fields match anything)."""
        con_id = query.get("conId", "")
        if con_id and con_id != "0":
            return con_id == str(self.con_id)
        for name in CONTRACT_FIELDS[1:]:
            wanted = query.get(name, "").strip()
            if wanted and not self._field_matches(name, wanted):
                return False
        return True

    def _field_matches(self, name: str, wanted: str) -> bool:
        if name == "symbol":
            return wanted.upper() == self.symbol
        if name == "secType":
            return wanted.upper() == self.sec_type
        if name == "lastTradeDateOrContractMonth":
            return bool(self.expiry) and self.expiry.startswith(wanted)
        if name == "strike":
            try:
                value = Decimal(wanted)
            except ArithmeticError:
                return False
            return value == 0 or value == self.strike
        if name == "right":
            right = _RIGHTS.get(wanted.upper())
            return right is None or right == self.right  # "?" and "0" mean unset
        if name == "multiplier":
            try:
                return Decimal(wanted) == self.multiplier_value
            except ArithmeticError:
                return False
        if name == "exchange":
            return wanted.upper() in self.exchanges
        if name == "primaryExchange":
            return wanted.upper() == self.primary_exchange
        if name == "currency":
            return wanted.upper() == self.currency
        if name == "localSymbol":
            return " ".join(wanted.upper().split()) == " ".join(self.local_symbol.split())
        if name == "tradingClass":
            return wanted.upper() == self.trading_class
        return True

    def contract_fields(self, exchange: str = "") -> list[str]:
        """The 11 contract fields of execDetails/openOrder/position rows (conId .. tradingClass, no
        primary exchange), with ``exchange`` as the order named it."""
        return [
            str(self.con_id), self.symbol, self.sec_type, self.expiry, _strike(self.strike), self.right,
            self.multiplier, exchange or self.listing_exchange, self.currency, self.local_symbol,
            self.trading_class,
        ]


def _strike(strike: Decimal) -> str:
    return format(strike.normalize(), "f") if strike else "0"


def resolve(instruments: Iterable[Instrument], query: ContractQuery) -> list[Instrument]:
    """Every instrument the query names (empty: unknown; more than one: ambiguous)."""
    return [inst for inst in instruments if inst.matches(query)]


def query_from(fields: Sequence[str]) -> ContractQuery:
    """The 12 contract fields of a request (conId .. tradingClass) as a query."""
    return dict(zip(CONTRACT_FIELDS, (f.strip() for f in fields), strict=False))


_STK_TYPES = "ACTIVETIM,AD,ALERT,ALLOC,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,MTL,OCA,STP,STP LMT,TRAIL,WHATIF"

SPY = Instrument(
    key="SPY", con_id=756733, symbol="SPY", sec_type="STK", currency="USD", primary_exchange="ARCA",
    exchanges=("SMART", "ARCA", "NYSE", "ISLAND", "BATS"), min_tick=Decimal("0.01"),
    start_price=Decimal("600.00"), long_name="SPDR S&P 500 ETF TRUST", local_symbol="SPY", trading_class="SPY",
    industry="Funds", category="Equity Fund",
)
GBTC = Instrument(
    key="GBTC", con_id=311853364, symbol="GBTC", sec_type="STK", currency="USD", primary_exchange="ARCA",
    exchanges=("SMART", "ARCA", "NYSE", "BATS"), min_tick=Decimal("0.01"), start_price=Decimal("75.00"),
    long_name="GRAYSCALE BITCOIN TRUST ETF", local_symbol="GBTC", trading_class="GBTC",
    industry="Funds", category="Digital Asset Fund",
)
AAPL = Instrument(
    key="AAPL", con_id=265598, symbol="AAPL", sec_type="STK", currency="USD", primary_exchange="NASDAQ",
    exchanges=("SMART", "NASDAQ", "ISLAND", "ARCA", "BATS"), min_tick=Decimal("0.01"),
    start_price=Decimal("230.00"), long_name="APPLE INC", local_symbol="AAPL", trading_class="NMS",
    industry="Technology", category="Computers",
)
SPY_OPTION = Instrument(
    key="SPY270115C500", con_id=700000501, symbol="SPY", sec_type="OPT", currency="USD",
    primary_exchange="CBOE", exchanges=("SMART", "CBOE", "AMEX", "ISE", "PHLX"), min_tick=Decimal("0.01"),
    start_price=Decimal("120.00"), long_name="SPY Jan15'27 500 Call", local_symbol="SPY   270115C00500000",
    trading_class="SPY", expiry="20270115", strike=Decimal(500), right="C", multiplier="100",
    under_con_id=756733, order_types="ACTIVETIM,AD,ALERT,ALLOC,DAY,GAT,GTC,GTD,IOC,LMT,MKT,OCA,STP,STP LMT,WHATIF",
    market_rule_ids="32",
)
ES_FUTURE = Instrument(
    key="ESZ6", con_id=700000612, symbol="ES", sec_type="FUT", currency="USD", primary_exchange="CME",
    exchanges=("CME", "QBALGO"), min_tick=Decimal("0.25"), start_price=Decimal("6000.00"),
    long_name="E-mini S&P 500", local_symbol="ESZ6", trading_class="ES", expiry="20261218",
    multiplier="50", under_con_id=11004968, time_zone="US/Central",
    order_types="ACTIVETIM,AD,ALERT,ALLOC,DAY,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,OCA,STP,STP LMT,TRAIL,WHATIF",
    market_rule_ids="67",
)
EURUSD = Instrument(
    key="EURUSD", con_id=12087792, symbol="EUR", sec_type="CASH", currency="USD", primary_exchange="IDEALPRO",
    exchanges=("IDEALPRO",), min_tick=Decimal("0.00005"), start_price=Decimal("1.08000"),
    long_name="European Monetary Union Euro", local_symbol="EUR.USD", trading_class="EUR.USD",
    time_zone="US/Eastern", order_types="ACTIVETIM,AD,ALERT,ALLOC,DAY,GTC,IOC,LMT,MKT,OCA,STP,STP LMT,WHATIF",
    market_rule_ids="239",
)

#: the instruments a simulator knows unless it is given others
DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (SPY, GBTC, AAPL, SPY_OPTION, ES_FUTURE, EURUSD)
