"""Our symbols -> IB contracts, and the cache of qualified ones.

The wire contract's symbols (``execution/mapper.py`` decides their asset class) become IB
contracts here and nowhere else:

* EQUITY: ``STK`` on SMART in USD (``BRK.B`` is IB's ``BRK B``).
* OPTION: an OCC symbol (``SPY   270115C00500000``: root, YYMMDD, C/P, strike x 1000) -> ``OPT``
  on SMART, multiplier 100.
* FUTURE: root + month code + year (``ESZ6``, ``/CLF27``) -> ``FUT`` with IB's contract month
  (``202612``) on the root's exchange from ``FUTURE_EXCHANGES``. A one-digit year is the next
  such year from the clock's year minus one (in 2026 ``Z6`` is 2026, ``H5`` 2025, ``H4`` 2034),
  so a contract that expired last year is still named right while it settles.
* FX: a six-letter pair (``EURUSD``, ``EUR/USD``) -> ``CASH`` on IDEALPRO.

Qualification (``reqContractDetails``) is asked once per contract per process; an unknown
contract is IB's error 200, which the caller turns into a rejection with IB's code and words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from schemas import AssetClass

#: futures root -> (exchange, currency): the roots this deployment trades; extend as needed
FUTURE_EXCHANGES: dict[str, tuple[str, str]] = {
    "ES": ("CME", "USD"), "MES": ("CME", "USD"), "NQ": ("CME", "USD"), "MNQ": ("CME", "USD"),
    "RTY": ("CME", "USD"), "6E": ("CME", "USD"), "6J": ("CME", "USD"), "BTC": ("CME", "USD"),
    "YM": ("CBOT", "USD"), "ZN": ("CBOT", "USD"), "ZB": ("CBOT", "USD"), "ZC": ("CBOT", "USD"),
    "ZS": ("CBOT", "USD"), "CL": ("NYMEX", "USD"), "NG": ("NYMEX", "USD"), "GC": ("COMEX", "USD"),
    "SI": ("COMEX", "USD"), "HG": ("COMEX", "USD"),
}
MONTH_CODES = {code: month for month, code in enumerate("FGHJKMNQUVXZ", start=1)}

_OCC = re.compile(r"^([A-Z]{1,6})\s*(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
_FUTURE = re.compile(r"^/?([A-Z0-9]{1,3}?)([FGHJKMNQUVXZ])(\d{1,2})$")
_FX = re.compile(r"^([A-Z]{3})[-/._]?([A-Z]{3})$")


class UnsupportedContract(ValueError):
    """The symbol cannot be expressed as an IB contract (bad shape, unknown futures root)."""


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """What names one IB contract before qualification (``ib_async.Contract`` fields)."""

    sec_type: str
    symbol: str
    exchange: str
    currency: str
    expiry: str = ""
    strike: Decimal | None = None
    right: str = ""
    multiplier: str = ""

    def to_ib(self) -> Any:
        from ib_async import Contract

        return Contract(secType=self.sec_type, symbol=self.symbol, exchange=self.exchange,
                        currency=self.currency, lastTradeDateOrContractMonth=self.expiry,
                        strike=float(self.strike) if self.strike is not None else 0.0,
                        right=self.right, multiplier=self.multiplier)


def spec_for(symbol: str, asset_class: AssetClass, *, today: date) -> ContractSpec:
    sym = symbol.strip().upper()
    if asset_class is AssetClass.EQUITY:
        return ContractSpec("STK", sym.replace(".", " ").replace("-", " "), "SMART", "USD")
    if asset_class is AssetClass.OPTION:
        m = _OCC.match(sym)
        if not m:
            raise UnsupportedContract(f"{symbol!r} is not an OCC option symbol (ROOT YYMMDD C/P STRIKEx1000)")
        root, yy, mm, dd, right, strike = m.groups()
        return ContractSpec("OPT", root, "SMART", "USD", expiry=f"20{yy}{mm}{dd}",
                            strike=Decimal(strike) / 1000, right=right, multiplier="100")
    if asset_class is AssetClass.FUTURE:
        m = _FUTURE.match(sym)
        if not m:
            raise UnsupportedContract(f"{symbol!r} is not a futures symbol (ROOT + month code + year)")
        root, code, year = m.groups()
        if root not in FUTURE_EXCHANGES:
            raise UnsupportedContract(f"futures root {root!r} has no exchange in adapters/ibkr/contracts.py")
        exchange, currency = FUTURE_EXCHANGES[root]
        return ContractSpec("FUT", root, exchange, currency,
                            expiry=f"{_year(year, today):04d}{MONTH_CODES[code]:02d}")
    if asset_class is AssetClass.FX:
        m = _FX.match(sym)
        if not m:
            raise UnsupportedContract(f"{symbol!r} is not a currency pair")
        return ContractSpec("CASH", m.group(1), "IDEALPRO", m.group(2))
    raise UnsupportedContract(f"IBKR does not trade {asset_class} here")


def _year(digits: str, today: date) -> int:
    if len(digits) == 2:
        return 2000 + int(digits)
    base = today.year - 1
    year = base - base % 10 + int(digits)
    return year if year >= base else year + 10


class ContractCache:
    """Qualified contracts by spec: IB is asked once per contract per process."""

    def __init__(self) -> None:
        self._qualified: dict[ContractSpec, Any] = {}

    def get(self, spec: ContractSpec) -> Any | None:
        return self._qualified.get(spec)

    def put(self, spec: ContractSpec, contract: Any) -> None:
        self._qualified[spec] = contract
