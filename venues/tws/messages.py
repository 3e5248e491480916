"""The TWS API messages the simulator reads and writes, laid out as at server version 176.

Incoming ids are ``IN``; each outgoing message is built by one function returning its field
list (``wire.encode`` frames it). Layouts follow what ib_async 2.1's decoder and client read and
write at 176 (``faProfile`` still present, no ``pendingPriceRevision``, errors with
``advancedOrderRejectJson``): field counts are strict, unset values are empty strings, and the
repeated-group counts (combo legs, smart-combo params, conditions, delta-neutral) are ``0``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from venues.tws.contracts import CONTRACT_FIELDS, ContractQuery, Instrument, query_from
from venues.tws.engine import ExecFilter
from venues.tws.orders import HELD, Execution, Order, OrderRequest, Position
from venues.tws.wire import UNSET_DOUBLE, Field, Fields, ProtocolError, format_decimal, ib_time


class IN(enum.IntEnum):
    """Client -> server message ids the simulator answers."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_COMPLETED_ORDERS = 99


class OUT(enum.IntEnum):
    """Server -> client message ids."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


#: IB's tick types the snapshots carry
BID, ASK, LAST, CLOSE = 1, 2, 4, 9
BID_SIZE, ASK_SIZE, LAST_SIZE = 0, 3, 5


def dec(value: Decimal | None) -> str:
    return "" if value is None else format_decimal(value)


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    query: ContractQuery
    request: OrderRequest
    is_combo: bool


def parse_place_order(fields: Sequence[str]) -> PlaceOrder:
    """``3|orderId|<12 contract fields>|secIdType|secId|action|qty|orderType|lmt|aux|tif|ocaGroup|
    account|openClose|origin|orderRef|transmit|parentId|block|sweep|displaySize|trigger|outsideRth|
    hidden|...``; the rest (up to ``ocaType``) is read only for a non-combo order."""
    f = Fields(fields, 1)
    order_id = f.integer()
    query = query_from([f.text() for _ in CONTRACT_FIELDS])
    f.skip(2)  # secIdType, secId
    action = f.text().upper()
    quantity = f.number()
    order_type = f.text().upper()
    lmt = f.number()
    aux = f.number()
    tif = f.text().upper() or "DAY"
    oca_group = f.text()
    account = f.text()
    f.skip(2)  # openClose, origin
    order_ref = f.text()
    transmit = f.flag()
    parent_id = f.integer()
    f.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = f.flag()
    f.skip(1)  # hidden
    is_combo = query.get("secType", "").upper() == "BAG"
    oca_type = 0
    if not is_combo:
        # sharesAllocation, discretionaryAmt, goodAfterTime, goodTillDate, faGroup, faMethod,
        # faPercentage, faProfile, modelCode, shortSaleSlot, designatedLocation, exemptCode
        f.skip(12)
        oca_type = f.integer()
    request = OrderRequest(
        order_id=order_id,
        action=action,
        total_quantity=quantity if quantity is not None else Decimal(0),
        order_type=order_type,
        lmt_price=lmt,
        aux_price=aux,
        tif=tif,
        oca_group=oca_group,
        oca_type=oca_type,
        account=account,
        order_ref=order_ref,
        transmit=transmit,
        parent_id=parent_id,
        outside_rth=outside_rth,
        exchange=query.get("exchange", "").upper(),
    )
    return PlaceOrder(query, request, is_combo)


@dataclass(frozen=True, slots=True)
class MarketDataRequest:
    req_id: int
    query: ContractQuery
    snapshot: bool
    is_combo: bool


def parse_market_data(fields: Sequence[str]) -> MarketDataRequest:
    """``1|11|reqId|<12 contract fields>|[legs]|dnc|[dnc x3]|genericTicks|snapshot|regulatory|options``."""
    f = Fields(fields, 2)
    req_id = f.integer()
    query = query_from([f.text() for _ in CONTRACT_FIELDS])
    is_combo = query.get("secType", "").upper() == "BAG"
    if is_combo:
        legs = f.integer()
        f.skip(4 * legs)
    if f.flag():
        f.skip(3)
    f.skip(1)  # genericTickList
    snapshot = f.flag()
    return MarketDataRequest(req_id, query, snapshot, is_combo)


def parse_contract_details(fields: Sequence[str]) -> tuple[int, ContractQuery]:
    """``9|8|reqId|<12 contract fields>|includeExpired|secIdType|secId|issuerId``."""
    f = Fields(fields, 2)
    req_id = f.integer()
    return req_id, query_from([f.text() for _ in CONTRACT_FIELDS])


def parse_exec_filter(fields: Sequence[str]) -> tuple[int, ExecFilter]:
    """``7|3|reqId|clientId|acctCode|time|symbol|secType|exchange|side``."""
    f = Fields(fields, 2)
    req_id = f.integer()
    return req_id, ExecFilter(
        client_id=f.integer(), account=f.text(), time=f.text(), symbol=f.text(), sec_type=f.text(),
        exchange=f.text(), side=f.text(),
    )


def require(fields: Sequence[str], count: int, name: str) -> None:
    if len(fields) < count:
        raise ProtocolError(f"{name} with {len(fields)} fields, expected at least {count}")


# -- connection ----------------------------------------------------------------------------------


def managed_accounts(accounts: Sequence[str]) -> list[Field]:
    return [OUT.MANAGED_ACCTS, 1, ",".join(accounts)]


def next_valid_id(order_id: int) -> list[Field]:
    return [OUT.NEXT_VALID_ID, 1, order_id]


def error(req_id: int, code: int, message: str) -> list[Field]:
    """``4|2|reqId|code|message|advancedOrderRejectJson``."""
    return [OUT.ERR_MSG, 2, req_id, code, message, ""]


def current_time(epoch: int) -> list[Field]:
    return [OUT.CURRENT_TIME, 1, epoch]


# -- contracts and market data -------------------------------------------------------------------------


def contract_details(req_id: int, inst: Instrument, exchange: str) -> list[Field]:
    """contractData at >= 164: no version field, no mdSizeMultiplier."""
    return [
        OUT.CONTRACT_DATA, req_id, inst.symbol, inst.sec_type, inst.expiry, _strike(inst), inst.right,
        exchange, inst.currency, inst.local_symbol, inst.trading_class, inst.trading_class, inst.con_id,
        dec(inst.min_tick), inst.multiplier, inst.order_types, ",".join(inst.exchanges), 1, inst.under_con_id,
        inst.long_name, inst.primary_exchange, inst.contract_month, inst.industry, inst.category, "",
        inst.time_zone, "", "", "", "",
        0,  # secIdList count
        1,  # aggGroup
        inst.symbol if inst.under_con_id else "", _under_sec_type(inst),
        ",".join([inst.market_rule_ids] * len(inst.exchanges)), inst.expiry, _stock_type(inst),
        dec(inst.size_increment), dec(inst.size_increment), dec(inst.size_increment),
    ]


def _under_sec_type(inst: Instrument) -> str:
    if inst.sec_type == "OPT":
        return "STK"
    return "IND" if inst.sec_type == "FUT" else ""


def _stock_type(inst: Instrument) -> str:
    if inst.sec_type != "STK":
        return ""
    return "ETF" if inst.category.endswith("Fund") else "COMMON"


def contract_details_end(req_id: int) -> list[Field]:
    return [OUT.CONTRACT_DATA_END, 1, req_id]


def tick_price(req_id: int, tick_type: int, price: Decimal, size: Decimal) -> list[Field]:
    """``1|6|reqId|tickType|price|size|attrMask`` (price and size together, as TWS sends them)."""
    return [OUT.TICK_PRICE, 6, req_id, tick_type, dec(price), dec(size), 0]


def tick_size(req_id: int, tick_type: int, size: Decimal) -> list[Field]:
    return [OUT.TICK_SIZE, 6, req_id, tick_type, dec(size)]


def tick_snapshot_end(req_id: int) -> list[Field]:
    return [OUT.TICK_SNAPSHOT_END, 1, req_id]


# -- orders ----------------------------------------------------------------------------------


def _strike(inst: Instrument) -> str:
    return dec(inst.strike) if inst.strike else "0"


def _price(value: Decimal | None) -> str:
    return UNSET_DOUBLE if value is None else dec(value)


def _order_contract(order: Order) -> list[Field]:
    return list(order.instrument.contract_fields(order.request.exchange))


def open_order(order: Order) -> list[Field]:
    """openOrder at 176 for a plain (non-combo, non-algo, unconditioned) order."""
    assert order.status != HELD
    req = order.request
    fields: list[Field] = [OUT.OPEN_ORDER, order.order_id, *_order_contract(order)]
    fields += [req.action, dec(req.total_quantity), req.order_type, _price(req.lmt_price),
               _price(req.aux_price), req.tif, req.oca_group, order.account, "O", 0, req.order_ref,
               order.client_id, order.perm_id, req.outside_rth, False, "", "",
               "",  # sharesAllocation
               "", "", "", ""]  # faGroup, faMethod, faPercentage, faProfile
    fields += ["", "", "", "", "", 0, "", "",  # modelCode, goodTillDate, rule80A, percentOffset,
               # settlingFirm, shortSaleSlot, designatedLocation, exemptCode
               0, "", "", "", "", "",  # auctionStrategy, startingPrice, stockRefPrice, delta, range x2
               0, False, False, False, "", req.oca_type or 3,  # displaySize, block, sweep, allOrNone,
               # minQty, ocaType
               False, False, "", req.parent_id, 0, "", 0,  # eTradeOnly, firmQuoteOnly, nbboPriceCap,
               # parentId, triggerMethod, volatility, volatilityType
               "", ""]  # deltaNeutralOrderType (empty: no delta-neutral fields follow), deltaNeutralAuxPrice
    fields += [0, 0, "", "", "", "", "",  # continuousUpdate, referencePriceType, trailStopPrice,
               # trailingPercent, basisPoints, basisPointsType, comboLegsDescrip
               0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams
               "", "", "",  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
               "",  # hedgeType
               False, "", "", False, False,  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld,
               # deltaNeutralContract present
               "",  # algoStrategy
               False, False, order.status]  # solicited, whatIf, status
    fields += ["", "", "", "", "", "", "", "", "",  # margins before/change/after
               dec(order.commission_charged) if order.commission_charged else UNSET_DOUBLE,
               UNSET_DOUBLE, UNSET_DOUBLE, order.instrument.currency, "",  # min/max commission, ccy, warning
               False, False]  # randomizeSize, randomizePrice
    fields += [0]  # conditions
    fields += ["", "", "", "", "", "", "", 0, "", "", "", "", False, False, "", False]
    # adjustedOrderType, triggerPrice, trailStopPrice, lmtPriceOffset, adjustedStopPrice,
    # adjustedStopLimitPrice, adjustedTrailingAmount, adjustableTrailingUnit, softDollarTier x3,
    # cashQty, dontUseAutoPriceForHedge, isOmsContainer, discretionaryUpToLimitPrice, usePriceMgmtAlgo
    fields += ["", "", False]  # duration, postToAts, autoCancelParent
    fields += ["", "", "", "", ""]  # minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsets
    return fields


def order_status(order: Order) -> list[Field]:
    """``3|orderId|status|filled|remaining|avgFillPrice|permId|parentId|lastFillPrice|clientId|whyHeld|mktCapPrice``."""
    return [OUT.ORDER_STATUS, order.order_id, order.status, dec(order.filled), dec(order.remaining),
            dec(order.avg_fill_price), order.perm_id, order.request.parent_id, dec(order.last_fill_price),
            order.client_id, order.why_held, 0]


def open_order_end() -> list[Field]:
    return [OUT.OPEN_ORDER_END, 1]


def completed_order(order: Order) -> list[Field]:
    """completedOrder at 176 (it carries no order id or client id: IB's completed orders are found
    by permId and orderRef)."""
    req = order.request
    fields: list[Field] = [OUT.COMPLETED_ORDER, *_order_contract(order)]
    fields += [req.action, dec(req.total_quantity), req.order_type, _price(req.lmt_price),
               _price(req.aux_price), req.tif, req.oca_group, order.account, "O", 0, req.order_ref,
               order.perm_id, req.outside_rth, False, "", "", "", "", "", ""]
    # ... permId, outsideRth, hidden, discretionaryAmt, goodAfterTime, faGroup, faMethod,
    # faPercentage, faProfile
    fields += ["", "", "", "", "", 0, "", "",  # modelCode .. exemptCode
               "", "", "", "", "",  # startingPrice, stockRefPrice, delta, stockRangeLower/Upper
               0, False, False, "", req.oca_type or 3, 0, "", 0,  # displaySize, sweepToFill, allOrNone,
               # minQty, ocaType, triggerMethod, volatility, volatilityType
               "", ""]  # deltaNeutralOrderType, deltaNeutralAuxPrice
    fields += [0, 0, "", "", "",  # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent,
               # comboLegsDescrip
               0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams
               "", "", "",  # scale sizes, increment
               "",  # hedgeType
               "", "", False, False,  # clearingAccount, clearingIntent, notHeld, deltaNeutralContract
               "",  # algoStrategy
               False, order.status, False, False,  # solicited, status, randomizeSize, randomizePrice
               0]  # conditions
    completed = ib_time(order.completed_time) if order.completed_time is not None else ""
    fields += ["", "", "", False, False, "", dec(order.filled), 0, False, "", False, False,
               0, completed, order.completed_status]
    # trailStopPrice, lmtPriceOffset, cashQty, dontUseAutoPriceForHedge, isOmsContainer,
    # autoCancelDate, filledQuantity, refFuturesConId, autoCancelParent, shareholder,
    # imbalanceOnly, routeMarketableToBbo, parentPermId, completedTime, completedStatus
    fields += ["", "", "", "", ""]  # minTradeQty .. midOffsetAtHalf
    return fields


def completed_orders_end() -> list[Field]:
    return [OUT.COMPLETED_ORDERS_END]


# -- executions -------------------------------------------------------------------------------------


def exec_details(req_id: int, ex: Execution) -> list[Field]:
    """execDetails at 176 (no version field, no pendingPriceRevision); ``req_id`` -1 for a live fill."""
    return [
        OUT.EXECUTION_DATA, req_id, ex.order_id, *ex.instrument.contract_fields(ex.contract_exchange),
        ex.exec_id, ib_time(ex.time), ex.account, ex.instrument.primary_exchange, ex.side, dec(ex.shares),
        dec(ex.price), ex.perm_id, ex.client_id, 0, dec(ex.cum_qty), dec(ex.avg_price), ex.order_ref,
        "", "", "", ex.liquidity,
    ]


def commission_report(ex: Execution) -> list[Field]:
    """``59|1|execId|commission|currency|realizedPNL|yield|yieldRedemptionDate`` (unset: IB's max double)."""
    realized = UNSET_DOUBLE if ex.realized_pnl is None else dec(ex.realized_pnl)
    return [OUT.COMMISSION_REPORT, 1, ex.exec_id, dec(ex.commission), ex.commission_currency, realized,
            UNSET_DOUBLE, ""]


def exec_details_end(req_id: int) -> list[Field]:
    return [OUT.EXECUTION_DATA_END, 1, req_id]


# -- account and portfolio ------------------------------------------------------------------------------


def position(pos: Position) -> list[Field]:
    """``61|3|account|<11 contract fields>|position|avgCost`` (the exchange left empty, as TWS does)."""
    contract = pos.instrument.contract_fields()
    contract[7] = ""
    return [OUT.POSITION_DATA, 3, pos.account, *contract, dec(pos.quantity), dec(pos.avg_cost)]


def position_end() -> list[Field]:
    return [OUT.POSITION_END, 1]


def account_value(tag: str, value: str, currency: str, account: str) -> list[Field]:
    return [OUT.ACCT_VALUE, 2, tag, value, currency, account]


def portfolio_value(pos: Position, market_price: Decimal) -> list[Field]:
    """updatePortfolio: exactly 20 fields (the primary exchange where other rows carry the exchange)."""
    inst = pos.instrument
    mult = inst.multiplier_value
    value = pos.quantity * market_price * mult
    unrealized = value - pos.quantity * pos.avg_cost
    return [OUT.PORTFOLIO_VALUE, 8, inst.con_id, inst.symbol, inst.sec_type, inst.expiry, _strike(inst),
            inst.right, inst.multiplier, inst.primary_exchange, inst.currency, inst.local_symbol,
            inst.trading_class, dec(pos.quantity), dec(market_price), dec(value), dec(pos.avg_cost),
            dec(unrealized), dec(pos.realized_pnl), pos.account]


def account_update_time(hhmm: str) -> list[Field]:
    return [OUT.ACCT_UPDATE_TIME, 1, hhmm]


def account_download_end(account: str) -> list[Field]:
    return [OUT.ACCT_DOWNLOAD_END, 1, account]


def account_update_multi(req_id: int, account: str, tag: str, value: str, currency: str) -> list[Field]:
    return [OUT.ACCOUNT_UPDATE_MULTI, 1, req_id, account, "", tag, value, currency]


def account_update_multi_end(req_id: int) -> list[Field]:
    return [OUT.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list[Field]:
    return [OUT.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list[Field]:
    return [OUT.ACCOUNT_SUMMARY_END, 1, req_id]
