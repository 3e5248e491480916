"""Binance's values into ours: symbols, order states, exact amounts, commissions.

Pure functions over Binance's own payloads (its strings, not ccxt's floats), so quantities and
prices stay exact Decimals; no I/O and no ccxt import here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from execution.ports import BrokerError, VenueOrderStatus
from schemas import OrderState
from schemas.symbols import split_crypto_pair

log = logging.getLogger(__name__)


def to_ccxt_symbol(symbol: str) -> str:
    """Our symbol -> ccxt's ``BTC/USDT``: the canonical ``BTC-USDT`` (schemas/symbols.py), and
    the aliases an older message may still carry (``BTCUSDT``, ``BTC/USDT``, ``btc_usdt``).

    Split by the same rule that makes symbols canonical (``split_crypto_pair``: a separator, or
    the longest known quote asset suffix), so every spelling of a pair names one market; the
    venue's own spelling (``BTCUSDT``) stays inside this adapter.
    """
    pair = split_crypto_pair(symbol.strip().upper())
    if pair is None:
        raise ValueError(f"cannot map {symbol!r} to a Binance spot market; expected BASE-QUOTE such as BTC-USDT")
    return f"{pair[0]}/{pair[1]}"


_STATE_BY_BINANCE_STATUS: dict[str, OrderState] = {
    "NEW": OrderState.SUBMITTED,
    "PENDING_NEW": OrderState.SUBMITTED,
    "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED,
    "FILLED": OrderState.FILLED,
    "CANCELED": OrderState.CANCELLED,
    "CANCELLED": OrderState.CANCELLED,
    "REJECTED": OrderState.REJECTED,
    "EXPIRED": OrderState.EXPIRED,
    "EXPIRED_IN_MATCH": OrderState.EXPIRED,
}


def order_state(status: str, filled: Decimal = Decimal(0)) -> OrderState:
    """Binance order ``status`` -> our OrderState. ``PENDING_CANCEL`` is still live: it keeps the
    state its fills imply until Binance reports the final CANCELED."""
    if status == "PENDING_CANCEL":
        return OrderState.PARTIALLY_FILLED if filled > 0 else OrderState.SUBMITTED
    try:
        return _STATE_BY_BINANCE_STATUS[status]
    except KeyError:
        raise BrokerError(f"unknown Binance order status {status!r}") from None


def dec(value: Any, default: Decimal = Decimal(0)) -> Decimal:
    """A Binance number (a string, or a ccxt float) as an exact Decimal; blank or garbage -> ``default``."""
    if value is None or value == "":
        return default
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return default


def sum_commission(rows: Sequence[Mapping[str, Any]]) -> tuple[Decimal, str | None]:
    """Total commission of Binance fill/trade rows, in their (normally single) commission asset.

    Should rows ever mix assets (BNB discount switched on mid-order), the asset with the largest total wins
    and a warning is logged: VenueOrderStatus carries one asset.
    """
    by_asset: dict[str, Decimal] = {}
    for row in rows:
        asset = str(row.get("commissionAsset") or "")
        by_asset[asset] = by_asset.get(asset, Decimal(0)) + dec(row.get("commission"))
    if not by_asset:
        return Decimal(0), None
    if len(by_asset) > 1:
        log.warning("commission in several assets %s; reporting the largest only", sorted(by_asset))
    asset, total = max(by_asset.items(), key=lambda item: item[1])
    return total, asset or None


@dataclass(frozen=True, slots=True)
class CommissionMark:
    """An order's cumulative commission as of ``filled``: ``GET /order`` does not report it."""

    filled: Decimal
    commission: Decimal
    asset: str | None


def parse_order(
    info: Mapping[str, Any], *, client_order_id: str | None = None, commission: CommissionMark | None = None
) -> VenueOrderStatus:
    """A raw Binance order payload (new/query/cancel response) -> cumulative VenueOrderStatus.

    Average price = ``cummulativeQuoteQty / executedQty`` (Binance's own spelling); the notional
    itself travels too (``filled_notional``), exact, for the fills' ``cumulative_notional``.
    """
    filled = dec(info.get("executedQty"))
    quote = dec(info.get("cummulativeQuoteQty"))
    status = str(info.get("status") or "NEW")
    state = order_state(status, filled)
    avg = (quote / filled).normalize() if filled > 0 and quote > 0 else None
    reason = ""
    if state is OrderState.EXPIRED:
        reason = f"expired at Binance ({info.get('type', '')} {info.get('timeInForce', '')})"
    elif state is OrderState.CANCELLED:
        reason = "cancelled at Binance"
    elif state is OrderState.REJECTED:
        reason = "rejected by Binance"
    order_id = info.get("orderId")
    # A cancel answer's clientOrderId is the cancel request's own id; the order's is origClientOrderId.
    own_id = client_order_id or info.get("origClientOrderId") or info.get("clientOrderId") or ""
    return VenueOrderStatus(
        client_order_id=str(own_id),
        venue_order_id=str(order_id) if order_id is not None else None,
        state=state,
        filled_quantity=filled,
        avg_fill_price=avg,
        commission=commission.commission if commission else Decimal(0),
        commission_asset=commission.asset if commission else None,
        reason=reason,
        filled_notional=quote if avg is not None else None,
    )
