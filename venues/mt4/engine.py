"""The simulated MT4 terminal behind the REST bridge, with no I/O: symbols and quotes, one hedging
account, tickets, and the rules MT4 applies to them.

``Mt4Engine`` takes parsed requests (``venues/mt4/wire.py``) and returns ``Ticket`` objects, or
raises ``Mt4Error`` with MT4's ``GetLastError`` code; ``order_json``/``account`` render the bridge
contract's JSON (README "MT4 bridge contract"). Unit tests drive it directly and deterministically;
``venues/mt4/http.py`` puts it on HTTP.

What it models:

* quotes: the shared ``PriceBook`` moves each symbol's BID along the ``PricePath``; the ask is the
  bid plus the symbol's spread. ``set_price``/``tick`` move prices and then run the triggers;
* a hedging account (a sell while a buy is open opens a second ticket) in USD at leverage 100:
  margin per open ticket = lots x contract size / leverage in the base currency, converted at the
  open price (fixed for the ticket's life); equity = balance + every open ticket's floating profit,
  commission and swap; free margin = equity - margin. Commission (``commission_per_lot``, per side)
  is charged on the ticket when it opens and reaches the balance with its profit when it closes;
  swap is always 0 (no rollover);
* validation in MT4's order: unknown symbol 4106, market closed 132, trade disabled 133, volume
  131 (lot step, min, max), stops 130 (SL/TP and a pending price at least the stop level from the
  reference price, on the right side), then the terminal's refusals (``knobs``: 146, 136, 138),
  then money 134 (the new ticket's margin above the free margin);
* pending orders trigger on the quote (buy limit: ask <= price, buy stop: ask >= price, sell
  limit: bid >= price, sell stop: bid <= price) and keep their ticket; SL/TP close open tickets
  (buy: bid <= sl or bid >= tp; sell: ask >= sl or ask <= tp), appending "[sl]"/"[tp]" to the
  comment as MT4 does. Every trigger executes at the market price of that moment (a gap gives a
  limit or TP a better price, a stop or SL a worse one); a pending order whose margin is not there
  when it triggers is deleted. Nothing triggers on a symbol whose market is closed;
* close: full, or partial with the remainder on a new ticket (``from_ticket``, comment "from #N",
  the client id, SL/TP, open price and time inherited; commission and margin split by volume);
  ``client_id`` on a close is recorded as the closed ticket's ``close_client_id``. Closing a pending
  ticket deletes it.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from venues.common.prices import PriceBook, PricePath
from venues.mt4.knobs import TradeKnobs
from venues.mt4.symbols import DEFAULT_SYMBOLS, SymbolSpec
from venues.mt4.tickets import Ticket
from venues.mt4.wire import (
    INVALID_STOPS,
    INVALID_TICKET,
    INVALID_TRADE_PARAMETERS,
    INVALID_VOLUME,
    MARKET_CLOSED,
    NOT_ENOUGH_MONEY,
    STATES,
    TRADE_DISABLED,
    UNKNOWN_SYMBOL,
    ZERO,
    CloseRequest,
    JsonObj,
    ModifyRequest,
    Mt4Error,
    PlaceRequest,
    fmt_lots,
    fmt_money,
    fmt_price,
    fmt_time,
    money,
)

DEFAULT_LOGIN = 5012345
DEFAULT_BALANCE = Decimal(10_000)
DEFAULT_LEVERAGE = 100
DEFAULT_COMMISSION_PER_LOT = Decimal("7.00")
#: FX moves about half a pip per tick, not the shared path's crypto-sized default
DEFAULT_PRICE_PATH = PricePath(volatility=Decimal("0.00005"))


class Mt4Engine:
    """One MT4 account and its symbols. Every knob is a plain attribute tests may change."""

    def __init__(
        self,
        *,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        price_path: PricePath | None = None,
        balance: Decimal = DEFAULT_BALANCE,
        leverage: int = DEFAULT_LEVERAGE,
        currency: str = "USD",
        login: int = DEFAULT_LOGIN,
        commission_per_lot: Decimal = DEFAULT_COMMISSION_PER_LOT,
        spread_points: int | None = None,
        stop_level_points: int | None = None,
        first_ticket: int | None = None,
        knobs: TradeKnobs | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if leverage < 1:
            raise ValueError("leverage must be >= 1")
        if (spread_points or 0) < 0 or (stop_level_points or 0) < 0:
            raise ValueError("spread_points and stop_level_points must be >= 0")
        self.symbols: dict[str, SymbolSpec] = {
            s.symbol: dataclasses.replace(
                s,
                spread_points=s.spread_points if spread_points is None else spread_points,
                stop_level_points=s.stop_level_points if stop_level_points is None else stop_level_points,
            )
            for s in symbols
        }
        self.currency = currency
        self.login = login
        self.leverage = leverage
        self.balance = Decimal(balance)
        self.commission_per_lot = Decimal(commission_per_lot)
        self.knobs = knobs or TradeKnobs()
        self._clock = clock
        self.price_path = price_path or DEFAULT_PRICE_PATH
        #: each symbol's BID along the path (the ask is bid + spread)
        self.prices = PriceBook(
            self.price_path,
            {sym: spec.point for sym, spec in self.symbols.items()},
            now_ms=lambda: int(self._clock() * 1000),
            default_start={sym: spec.start for sym, spec in self.symbols.items()},
        )
        for spec in self.symbols.values():  # fail at start, not on the first trade
            self._rate(spec.base)
            self._rate(spec.quote)
        # Tickets differ between simulator instances (a test database outlives one simulator);
        # ``first_ticket`` makes them reproducible.
        start = first_ticket if first_ticket is not None else random.SystemRandom().randrange(10_000_000, 90_000_000)
        self._tickets_seq = itertools.count(start)
        self._tickets: dict[int, Ticket] = {}

    # -- clock, symbols, quotes ------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def spec(self, symbol: str) -> SymbolSpec:
        spec = self.symbols.get(symbol)
        if spec is None:
            raise Mt4Error(UNKNOWN_SYMBOL, f"{symbol!r} is not one of {', '.join(self.symbols)}")
        return spec

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]:
        spec = self.spec(symbol)
        bid = self.prices.price(symbol)
        return bid, bid + spec.spread

    def quote(self, symbol: str) -> JsonObj:
        """``GET /quote/{symbol}``."""
        spec = self.spec(symbol)
        bid, ask = self.bid_ask(symbol)
        return {"symbol": symbol, "bid": fmt_price(bid, spec.digits), "ask": fmt_price(ask, spec.digits),
                "time": fmt_time(self.now())}

    def set_price(
        self, symbol: str, *, bid: Decimal | None = None, ask: Decimal | None = None, hold: bool = True
    ) -> tuple[Decimal, Decimal]:
        """Move ``symbol`` so its bid (or its ask) is the given price now, then run the triggers.

        With ``hold`` (the default) the random walk leaves it alone afterwards; ``release`` hands it back.
        """
        spec = self.spec(symbol)
        if (bid is None) == (ask is None):
            raise ValueError("give exactly one of bid and ask")
        target = Decimal(bid) if bid is not None else Decimal(ask or 0) - spec.spread
        if target <= 0:
            raise ValueError(f"the bid must be positive, got {target}")
        self.prices.set(symbol, target, hold=hold)
        self._trigger(symbol)
        return self.bid_ask(symbol)

    def release(self, symbol: str) -> None:
        self.prices.release(self.spec(symbol).symbol)

    def tick(self) -> None:
        """Advance every un-held price one step along the path, then run the triggers."""
        self.prices.step()
        for symbol in self.symbols:
            self._trigger(symbol)

    # -- account ---------------------------------------------------------------------------------

    @property
    def margin(self) -> Decimal:
        return sum((t.margin for t in self._tickets.values() if t.is_open), ZERO)

    @property
    def equity(self) -> Decimal:
        floating = sum((self.floating_profit(t) + t.commission + t.swap for t in self._tickets.values()
                        if t.is_open), ZERO)
        return self.balance + floating

    @property
    def free_margin(self) -> Decimal:
        return self.equity - self.margin

    def account(self) -> JsonObj:
        """``GET /account``."""
        equity, margin = self.equity, self.margin
        return {"login": self.login, "balance": fmt_money(self.balance), "equity": fmt_money(equity),
                "margin": fmt_money(margin), "free_margin": fmt_money(equity - margin),
                "currency": self.currency, "leverage": self.leverage}

    # -- tickets ---------------------------------------------------------------------------------

    def ticket(self, number: int) -> Ticket:
        found = self._tickets.get(number)
        if found is None:
            raise Mt4Error(INVALID_TICKET, f"no ticket {number}")
        return found

    def orders(self, *, client_id: str | None = None, state: str | None = None) -> list[Ticket]:
        """``GET /orders``: tickets created with ``client_id`` (remainders of partial closes
        included) or closed with it as ``close_client_id``, in ``state``; oldest first."""
        if state is not None and state not in STATES:
            raise Mt4Error(INVALID_TRADE_PARAMETERS, f"state must be one of {', '.join(STATES)}, got {state!r}")
        return [
            t for t in sorted(self._tickets.values(), key=lambda t: t.ticket)
            if (client_id is None or client_id in (t.client_id, t.close_client_id))
            and (state is None or t.state == state)
        ]

    def orders_for_client(self, client_id: str) -> list[Ticket]:
        return self.orders(client_id=client_id)

    def floating_profit(self, t: Ticket) -> Decimal:
        """An open ticket's profit at the price it would close at now (bid for a buy, ask for a sell)."""
        if not t.is_open:
            return t.profit
        return self._profit(t, self._close_price(t))

    def order_json(self, t: Ticket) -> JsonObj:
        """The contract's order object."""
        digits = self.symbols[t.symbol].digits
        return {
            "ticket": t.ticket,
            "symbol": t.symbol,
            "side": t.side,
            "type": t.type,
            "state": t.state,
            "volume": fmt_lots(t.volume),
            "open_price": fmt_price(t.open_price, digits),
            "price": fmt_price(t.price, digits),
            "open_time": fmt_time(t.open_time),
            "close_price": fmt_price(t.close_price, digits),
            "close_time": fmt_time(t.close_time),
            "sl": fmt_price(t.sl, digits),
            "tp": fmt_price(t.tp, digits),
            "profit": fmt_money(self.floating_profit(t)),
            "commission": fmt_money(t.commission),
            "swap": fmt_money(t.swap),
            "magic": t.magic,
            "comment": t.comment,
            "client_id": t.client_id,
            "close_client_id": t.close_client_id,
            "from_ticket": t.from_ticket,
        }

    # -- trading ---------------------------------------------------------------------------------

    def place(self, req: PlaceRequest) -> Ticket:
        """``POST /order/place``: a market order opens at once (buy at the ask, sell at the bid);
        a limit or stop order is pending. Not idempotent: the same ``client_id`` twice is two tickets."""
        spec = self.spec(req.symbol)
        self._check_tradeable(spec)
        self._check_volume(spec, req.volume)
        sl, tp = self._normalized(spec, req.sl), self._normalized(spec, req.tp)
        price = self._normalized(spec, req.price)
        bid, ask = self.bid_ask(spec.symbol)
        buy = req.side == "buy"
        if req.type == "market":
            self._check_stops(spec, buy, bid if buy else ask, sl, tp, "the market")
        else:
            assert price is not None
            self._check_pending_price(spec, buy, req.type, price, bid, ask)
            self._check_stops(spec, buy, price, sl, tp, "the order price")
        self._refuse(at_market=req.type == "market")
        if req.type == "market":
            self._check_money(spec, req.volume, ask if buy else bid)
        t = Ticket(
            ticket=next(self._tickets_seq), symbol=spec.symbol, side=req.side, type=req.type,
            state="pending", volume=req.volume, price=price, placed_time=self.now(), sl=sl, tp=tp,
            magic=req.magic, comment=req.comment, client_id=req.client_id,
        )
        self._tickets[t.ticket] = t
        if req.type == "market":
            self._open(t, ask if buy else bid)
        return t

    def modify(self, req: ModifyRequest) -> Ticket:
        """``POST /order/modify``: SL/TP of an open or pending ticket, the price of a pending one.

        A field left out is unchanged; ``null`` or ``"0"`` removes an SL/TP. An open ticket's new
        SL/TP are checked against the market, a pending ticket's against its (new) price.
        """
        t = self._live(req.ticket)
        spec = self.symbols[t.symbol]
        self._check_tradeable(spec)
        if req.price is not None and not t.is_pending:
            raise Mt4Error(INVALID_TRADE_PARAMETERS, f"ticket {t.ticket} is {t.state}: only a pending order's "
                           "price can be modified")
        sl = t.sl if req.sl is None else self._normalized(spec, req.sl or None)
        tp = t.tp if req.tp is None else self._normalized(spec, req.tp or None)
        price = t.price if req.price is None else self._normalized(spec, req.price)
        bid, ask = self.bid_ask(t.symbol)
        if t.is_pending:
            assert price is not None
            self._check_pending_price(spec, t.is_buy, t.type, price, bid, ask)
            self._check_stops(spec, t.is_buy, price, sl, tp, "the order price")
        else:  # only what changes is checked: an old TP the market has come close to stays valid
            self._check_stops(spec, t.is_buy, bid if t.is_buy else ask, sl if req.sl is not None else None,
                              tp if req.tp is not None else None, "the market")
        self._refuse(at_market=False)
        t.sl, t.tp, t.price = sl, tp, price
        return t

    def close(self, req: CloseRequest) -> tuple[Ticket, Ticket | None]:
        """``POST /order/close``: (the closed ticket, the remainder's new ticket or ``None``).

        An open ticket closes ``volume`` (all when omitted) at the bid (buy) or ask (sell); a pending
        ticket is deleted whatever the volume.
        """
        t = self._live(req.ticket)
        spec = self.symbols[t.symbol]
        self._check_tradeable(spec)
        if t.is_pending:
            self._refuse(at_market=False)
            t.state, t.close_time = "deleted", self.now()
            return t, None
        volume = t.volume if req.volume is None else req.volume
        self._check_volume(spec, volume)
        if volume > t.volume:
            raise Mt4Error(INVALID_VOLUME, f"cannot close {fmt_lots(volume)} lots of ticket {t.ticket}, "
                           f"which has {fmt_lots(t.volume)}")
        self._refuse(at_market=True)
        price = self._close_price(t)
        remainder = None
        if volume < t.volume:
            remainder = self._split(t, volume)
        self._close(t, price, close_client_id=req.client_id)
        return t, remainder

    # -- rules -----------------------------------------------------------------------------------

    def _live(self, number: int) -> Ticket:
        """A ticket that can still be changed; a closed or deleted one is MT4's 4108."""
        t = self.ticket(number)
        if t.state not in ("open", "pending"):
            raise Mt4Error(INVALID_TICKET, f"ticket {number} is {t.state}")
        return t

    def _check_tradeable(self, spec: SymbolSpec) -> None:
        if self.knobs.is_closed(spec.symbol):
            raise Mt4Error(MARKET_CLOSED, f"{spec.symbol} is not trading now")
        if self.knobs.is_disabled(spec.symbol):
            raise Mt4Error(TRADE_DISABLED, f"trading {spec.symbol} is disabled")

    @staticmethod
    def _check_volume(spec: SymbolSpec, volume: Decimal) -> None:
        if volume < spec.min_lot or volume > spec.max_lot or volume % spec.lot_step != 0:
            raise Mt4Error(INVALID_VOLUME, f"volume {volume} lots: must be a multiple of {spec.lot_step} "
                           f"between {spec.min_lot} and {spec.max_lot}")

    @staticmethod
    def _normalized(spec: SymbolSpec, price: Decimal | None) -> Decimal | None:
        """A price on the symbol's digits (MT4's NormalizeDouble, which a bridge applies)."""
        if price is None:
            return None
        return price.quantize(spec.point, rounding=ROUND_HALF_UP)

    @staticmethod
    def _check_stops(
        spec: SymbolSpec, buy: bool, reference: Decimal, sl: Decimal | None, tp: Decimal | None, what: str
    ) -> None:
        """MT4's rule: a buy's SL at most, its TP at least, the stop level from the reference
        (the bid, or a pending order's price); mirrored for a sell (the ask)."""
        level = spec.stop_level
        d = spec.digits
        if sl is not None:
            limit = reference - level if buy else reference + level
            if (sl > limit) if buy else (sl < limit):
                raise Mt4Error(INVALID_STOPS, f"sl {fmt_price(sl, d)} must be {'<=' if buy else '>='} "
                               f"{fmt_price(limit, d)} ({spec.stop_level_points} points from {what} "
                               f"{fmt_price(reference, d)})")
        if tp is not None:
            limit = reference + level if buy else reference - level
            if (tp < limit) if buy else (tp > limit):
                raise Mt4Error(INVALID_STOPS, f"tp {fmt_price(tp, d)} must be {'>=' if buy else '<='} "
                               f"{fmt_price(limit, d)} ({spec.stop_level_points} points from {what} "
                               f"{fmt_price(reference, d)})")

    @staticmethod
    def _check_pending_price(
        spec: SymbolSpec, buy: bool, order_type: str, price: Decimal, bid: Decimal, ask: Decimal
    ) -> None:
        """A limit below (buy) / above (sell) the market, a stop above / below, by the stop level."""
        level, d = spec.stop_level, spec.digits
        market = ask if buy else bid
        below = (order_type == "limit") == buy  # buy limit and sell stop rest below the market
        limit = market - level if below else market + level
        if (price > limit) if below else (price < limit):
            raise Mt4Error(INVALID_STOPS, f"{'buy' if buy else 'sell'} {order_type} price {fmt_price(price, d)} "
                           f"must be {'<=' if below else '>='} {fmt_price(limit, d)} "
                           f"({spec.stop_level_points} points from the {'ask' if buy else 'bid'} "
                           f"{fmt_price(market, d)})")

    def _refuse(self, *, at_market: bool) -> None:
        code = self.knobs.refusal(at_market=at_market)
        if code is not None:
            raise Mt4Error(code)

    def _margin(self, spec: SymbolSpec, volume: Decimal, price: Decimal) -> Decimal:
        """lots x contract size / leverage, in the base currency, converted at ``price``."""
        base_units = volume * spec.contract_size / self.leverage
        if spec.base == self.currency:
            return money(base_units)
        if spec.quote == self.currency:
            return money(base_units * price)
        return money(base_units * self._rate(spec.base))

    def _check_money(self, spec: SymbolSpec, volume: Decimal, price: Decimal) -> None:
        needed, free = self._margin(spec, volume, price), money(self.free_margin)
        if needed > free:
            raise Mt4Error(NOT_ENOUGH_MONEY, f"{fmt_lots(volume)} lots {spec.symbol} need {fmt_money(needed)} "
                           f"{self.currency} margin, free margin is {fmt_money(free)}")

    def _rate(self, currency: str) -> Decimal:
        """How many account-currency units one ``currency`` unit is worth now (by the bids)."""
        if currency == self.currency:
            return Decimal(1)
        direct, inverse = f"{currency}{self.currency}", f"{self.currency}{currency}"
        if direct in self.symbols:
            return self.prices.price(direct)
        if inverse in self.symbols:
            return 1 / self.prices.price(inverse)
        raise ValueError(f"no symbol converts {currency} into {self.currency} ({direct} or {inverse})")

    def _profit(self, t: Ticket, close_price: Decimal) -> Decimal:
        spec = self.symbols[t.symbol]
        assert t.open_price is not None
        move = close_price - t.open_price if t.is_buy else t.open_price - close_price
        in_quote = move * t.volume * spec.contract_size
        if spec.quote == self.currency:
            return money(in_quote)
        if spec.base == self.currency:  # USDJPY: JPY back to USD at the closing rate
            return money(in_quote / close_price)
        return money(in_quote * self._rate(spec.quote))

    def _close_price(self, t: Ticket) -> Decimal:
        bid, ask = self.bid_ask(t.symbol)
        return bid if t.is_buy else ask

    def _open(self, t: Ticket, price: Decimal) -> None:
        spec = self.symbols[t.symbol]
        t.state, t.open_price, t.open_time = "open", price, self.now()
        t.commission = money(-self.commission_per_lot * t.volume)
        t.margin = self._margin(spec, t.volume, price)

    def _close(self, t: Ticket, price: Decimal, *, close_client_id: str | None = None, reason: str = "") -> None:
        t.profit = self._profit(t, price)
        t.state, t.close_price, t.close_time = "closed", price, self.now()
        t.close_client_id = close_client_id
        if reason:
            t.comment = f"{t.comment}[{reason}]"
        self.balance += t.profit + t.commission + t.swap

    def _split(self, t: Ticket, volume: Decimal) -> Ticket:
        """Leave ``volume`` on ``t`` and the rest on a new open ticket; commission and margin by volume."""
        spec = self.symbols[t.symbol]
        assert t.open_price is not None
        rest = t.volume - volume
        closed_commission = money(t.commission * volume / t.volume)
        remainder = dataclasses.replace(
            t, ticket=next(self._tickets_seq), volume=rest, commission=t.commission - closed_commission,
            swap=ZERO, margin=self._margin(spec, rest, t.open_price), comment=f"from #{t.ticket}",
            close_client_id=None, from_ticket=t.ticket,
        )
        t.volume, t.commission = volume, closed_commission
        t.margin = self._margin(spec, volume, t.open_price)
        self._tickets[remainder.ticket] = remainder
        return remainder

    # -- triggers --------------------------------------------------------------------------------

    def _trigger(self, symbol: str) -> None:
        """Pending orders the quote reached open (or are deleted without the margin), then SL/TP."""
        if self.knobs.is_closed(symbol):
            return
        spec = self.symbols[symbol]
        bid, ask = self.bid_ask(symbol)
        for t in self._on(symbol, "pending"):
            assert t.price is not None
            market = ask if t.is_buy else bid
            below = (t.type == "limit") == t.is_buy
            if (market <= t.price) if below else (market >= t.price):
                if self._margin(spec, t.volume, market) > money(self.free_margin):
                    t.state, t.close_time = "deleted", self.now()
                else:
                    self._open(t, market)
        for t in self._on(symbol, "open"):
            market = bid if t.is_buy else ask
            if t.sl is not None and ((market <= t.sl) if t.is_buy else (market >= t.sl)):
                self._close(t, market, reason="sl")
            elif t.tp is not None and ((market >= t.tp) if t.is_buy else (market <= t.tp)):
                self._close(t, market, reason="tp")

    def _on(self, symbol: str, state: str) -> Iterable[Ticket]:
        return [t for t in sorted(self._tickets.values(), key=lambda t: t.ticket)
                if t.symbol == symbol and t.state == state]
