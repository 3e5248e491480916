"""An MT4 REST bridge simulator (IC Markets-style hedging account) built to the bridge contract
(README "MT4 bridge contract"), for tests, demos and drills.

* ``engine``: ``Mt4Engine``, the terminal with no I/O (symbols and quotes, account, tickets, triggers);
* ``http``: ``Mt4Simulator``, the bridge's HTTP endpoints behind the shared faults, stats and
  ``/_sim`` control endpoints of ``venues/common/``;
* ``knobs``: ``TradeKnobs``, MT4's own refusals (requote, off quotes, busy, market closed, disabled);
* ``wire``: ``Mt4Error`` and the retcodes, formatting and request parsing;
* ``cli``: ``main(argv)``, run standalone (``superintel venue mt4 --port 8005``).
"""

from typing import Any

from venues.common.faults import Fault, Faults, Op
from venues.common.prices import PricePath
from venues.common.stats import SimStats
from venues.mt4.engine import Mt4Engine
from venues.mt4.http import ENDPOINTS, Mt4Simulator
from venues.mt4.knobs import TradeKnobs
from venues.mt4.symbols import DEFAULT_SYMBOLS, SymbolSpec
from venues.mt4.tickets import Ticket
from venues.mt4.wire import CloseRequest, ModifyRequest, Mt4Error, PlaceRequest

__all__ = [
    "DEFAULT_SYMBOLS",
    "ENDPOINTS",
    "CloseRequest",
    "Fault",
    "Faults",
    "ModifyRequest",
    "Mt4Engine",
    "Mt4Error",
    "Mt4Simulator",
    "Op",
    "PlaceRequest",
    "PricePath",
    "SimStats",
    "SymbolSpec",
    "Ticket",
    "TradeKnobs",
    "main",
]


def __getattr__(name: str) -> Any:
    """``main`` is imported on first use: importing ``venues.mt4.cli`` here would make
    ``python -m venues.mt4.cli`` warn that the module was imported before it ran."""
    if name == "main":
        from venues.mt4.cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
