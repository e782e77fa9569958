"""Decoding the ticks of ibconn's own market data lines straight from the wire fields.

For every tick, ``ib_async`` runs ``Decoder.interpret`` → ``Decoder.priceSizeTick``
(or the generic ``wrap`` handler of tickSize, or ``Decoder.tickByTick`` with its
``TickAttribLast``) → the ``Wrapper`` method, which updates the ``Ticker``, makes a
``TickData`` (``TickByTickAllLast``) for ``ticker.ticks`` (``ticker.tickByTicks``)
and adds the ticker to ``pendingTickers`` (hashing it in Python). For ibconn's own
lines that is about 1 µs per tick of work whose result ibconn only reads back.

:class:`TickTap` does that work for the lines that ibconn's
:class:`~ibconn.market_data.service.MarketDataService` *owns* (it registers them with
:meth:`TickTap.own`). :class:`~ibconn.wire.receive.FastReceiver` offers it every
tickPrice (msg 1), tickSize (2) and tickByTick (99) message of a pure-ASCII read;
for an owned line the tap:

* converts the fields exactly as ``ib_async`` 2.1 does (``int`` / ``float``, the same
  empty-field defaults, the same field counts);
* updates the line's ``Ticker`` message by message exactly as ``Wrapper.priceSizeTick``,
  ``Wrapper.tickSize`` and ``Wrapper.tickByTickAllLast`` do (bid/ask/last and their
  sizes and ``prev*`` values, the no-market sentinels, the other price and size
  fields), so code that reads the ticker, even in the middle of a read, sees what
  ``ib_async`` would show;
* keeps what ibconn needs in one flat list per line: ``None, tickType, price,
  size`` per tick of a market data line (the fields of ``ib_async``'s ``TickData``
  without the time), ``time, price, size, pastLimit, unreported, exchange,
  conditions`` per trade of a tick-by-tick line (the values ``ib_async`` hands to
  ``tickByTickAllLast``). Flat, so that the only object per tick that outlives the
  message is ibconn's own model: fewer young collections of the garbage collector.

At the end of the read (or the slice of a read, see ``FastReceiver.request_yield``),
and before any message that could make ibconn publish a status event,
:meth:`TickTap.flush` hands each touched line's list to its sink (the service
builds and publishes its models from them, once per batch) and adds its ticker to
``wrapper.pendingTickers``, so ``ib.pendingTickersEvent`` fires for it in
``tcpDataProcessed`` as before, with ``ticker.time`` set by ``ib_async``.

**Not kept** for owned lines: ``ticker.ticks`` and ``ticker.tickByTicks`` stay
empty (``ib_async`` would fill them with one object per tick; ibconn's streams
deliver the same ticks). The ``fast_ticks`` setting turns the tap off and gives
``ib_async``'s own decoding back.

Everything else goes to ``ib_async``'s decoder, unchanged: a line the tap does not
own, a tick type this module does not handle (tickByTick BidAsk/MidPoint, a price
or size tick type ``ib_async`` has no mapping for), a field count or a field that
does not parse, an empty price (``ib_async`` ignores those), and every read that is
not pure ASCII or arrives with debug logging on (the receiver's general path). A
sink that raises is logged; it never breaks the receive path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ib_async.wrapper import PRICE_TICK_MAP, SIZE_TICK_MAP

from ibconn.core.logs import get_logger

__all__ = [
    "MKT",
    "MKT_WIDTH",
    "SAFE_MESSAGE_IDS",
    "TBT",
    "TBT_WIDTH",
    "TapLine",
    "TickTap",
    "set_last_trade",
]

MKT: Final = "mkt"
"""A ``reqMktData`` line: tickPrice and tickSize messages."""
TBT: Final = "tbt"
"""A tick-by-tick ``AllLast`` (or ``Last``) line: tickByTick types 1 and 2."""

SAFE_MESSAGE_IDS: Final = frozenset({"1", "2", "45", "46", "81", "99"})
"""Message ids ``ib_async`` may decode between tapped ticks without a flush first:
ticks and tick parameters, which never make ibconn publish a status event. Before any
other message the receiver flushes, so ticks and status events keep their order."""

MKT_WIDTH: Final = 4
"""Values per tick in a market data line's batch: ``None, tickType, price, size``."""
TBT_WIDTH: Final = 7
"""Values per trade in a tick-by-tick line's batch: ``time, price, size, pastLimit,
unreported, exchange, conditions``."""

_log = get_logger("market_data")
_PRICE_ATTR: Final[dict[int, str]] = dict(PRICE_TICK_MAP)
_SIZE_ATTR: Final[dict[int, str]] = dict(SIZE_TICK_MAP)


def set_last_trade(
    ticker: Any, price: float, size: float, empty_price: Any, empty_size: Any
) -> None:
    """What ``ib_async``'s ``Wrapper.tickByTickAllLast`` does to the ticker for one trade
    (``-1`` / ``0`` is TWS's "no trade": the ticker's empty values)."""
    ticker.prevLast = ticker.last
    ticker.prevLastSize = ticker.lastSize
    if price == -1 and size == 0:
        ticker.last = empty_price
        ticker.lastSize = empty_size
    else:
        ticker.last = price
        ticker.lastSize = size


class TapLine:
    """One owned line: its ``ib_async`` ticker, its kind, the values of the current batch."""

    __slots__ = ("items", "kind", "owner", "req_id", "sink", "ticker", "touched")

    def __init__(
        self,
        req_id: int,
        ticker: Any,
        kind: str,
        sink: Callable[[TapLine, list[Any]], None],
        owner: object,
    ) -> None:
        self.req_id = req_id
        self.ticker = ticker
        self.kind = kind
        self.sink = sink
        self.owner = owner
        """What the sink needs to find its own state (the service's line)."""
        self.items: list[Any] = []
        """The batch, flat: :data:`MKT_WIDTH` or :data:`TBT_WIDTH` values per item."""
        self.touched = False  # in TickTap.touched (ib_async would have added the ticker)


class TickTap:
    """Decodes the ticks of owned lines for one ``ib_async`` wrapper (see the module doc).

    The receiver calls :meth:`price`, :meth:`size` or :meth:`by_tick` with the
    split fields of a tickPrice, tickSize or tickByTick message; True means the
    message was handled, False that ``ib_async`` must decode it.
    """

    __slots__ = ("_wrapper", "empty_price", "empty_size", "lines", "touched")

    def __init__(self, wrapper: Any) -> None:
        self._wrapper = wrapper
        self.empty_price: Any = wrapper.defaultEmptyPrice
        self.empty_size: Any = wrapper.defaultEmptySize
        self.lines: dict[str, TapLine] = {}
        """Owned lines by request id as TWS writes it (decimal text)."""
        self.touched: list[TapLine] = []
        """Lines with a batch to flush, in the order they were first touched."""

    def own(
        self,
        req_id: int,
        ticker: Any,
        kind: str,
        sink: Callable[[TapLine, list[Any]], None],
        owner: object,
    ) -> TapLine:
        """Decode the ticks of ``req_id`` from now on; ``sink`` receives each batch."""
        if kind not in (MKT, TBT):
            raise ValueError(f"unknown line kind {kind!r}")
        line = TapLine(req_id, ticker, kind, sink, owner)
        self.lines[str(req_id)] = line
        return line

    def disown(self, req_id: int) -> None:
        """Leave ``req_id`` to ``ib_async`` again (a batch already taken is still flushed)."""
        self.lines.pop(str(req_id), None)

    def _touch(self, line: TapLine) -> None:
        line.touched = True
        self.touched.append(line)

    # -- messages (the hot path) -------------------------------------------------------

    def price(self, fields: list[str]) -> bool:
        """tickPrice: ``1, version, reqId, tickType, price, size, attrMask``."""
        if len(fields) != 7:
            return False
        line = self.lines.get(fields[2])
        if line is None or line.kind != MKT or not fields[4]:
            return False
        try:
            tick_type = int(fields[3])
            price = float(fields[4])
            size = float(fields[5] or 0)
        except ValueError:
            return False
        ticker = line.ticker
        if tick_type in {1, 66}:
            if size == 0:
                price, size = self.empty_price, self.empty_size
            ticker.prevBid = ticker.bid
            ticker.prevBidSize = ticker.bidSize
            ticker.bid = price
            ticker.bidSize = size
        elif tick_type in {2, 67}:
            if size == 0:
                price, size = self.empty_price, self.empty_size
            ticker.prevAsk = ticker.ask
            ticker.prevAskSize = ticker.askSize
            ticker.ask = price
            ticker.askSize = size
        elif tick_type in {4, 68}:
            if price == -1 and size == 0 and ticker.close > 0:
                price, size = self.empty_price, self.empty_size
            ticker.prevLast = ticker.last
            ticker.prevLastSize = ticker.lastSize
            ticker.last = price
            ticker.lastSize = size
        else:
            attr = _PRICE_ATTR.get(tick_type)
            if attr is None:
                return False  # ib_async's wrapper logs it
            setattr(ticker, attr, price)
        if price or size:
            line.items += (None, tick_type, price, size)
        if not line.touched:
            self._touch(line)
        return True

    def size(self, fields: list[str]) -> bool:
        """tickSize: ``2, version, reqId, tickType, size``."""
        if len(fields) != 5:
            return False
        line = self.lines.get(fields[2])
        if line is None or line.kind != MKT:
            return False
        try:
            tick_type = int(fields[3] or 0)
            size = float(fields[4] or 0)
        except ValueError:
            return False
        ticker = line.ticker
        price = self.empty_price
        if tick_type in {0, 69}:
            if size == ticker.bidSize:
                return True  # ib_async: no tick, ticker not pending
            ticker.prevBidSize = ticker.bidSize
            if size == 0:
                ticker.bid = self.empty_price
                ticker.bidSize = self.empty_size
            else:
                price = ticker.bid
                ticker.bidSize = size
        elif tick_type in {3, 70}:
            if size == ticker.askSize:
                return True
            ticker.prevAskSize = ticker.askSize
            if size == 0:
                ticker.ask = self.empty_price
                ticker.askSize = self.empty_size
            else:
                price = ticker.ask
                ticker.askSize = size
        elif tick_type in {5, 71}:
            price = ticker.last
            if ticker.isUnset(price):
                return True
            if size != ticker.lastSize:
                ticker.prevLastSize = ticker.lastSize
                ticker.lastSize = size
        else:
            attr = _SIZE_ATTR.get(tick_type)
            if attr is None:
                return False
            setattr(ticker, attr, size)
        if price or size:
            line.items += (None, tick_type, price, size)
        if not line.touched:
            self._touch(line)
        return True

    def by_tick(self, fields: list[str]) -> bool:
        """tickByTick Last/AllLast: ``99, reqId, 1|2, time, price, size, mask, exchange,
        conditions`` (BidAsk and MidPoint are left to ``ib_async``)."""
        if len(fields) != 9:
            return False
        tick_type = fields[2]
        if tick_type not in {"2", "1"}:
            return False
        line = self.lines.get(fields[1])
        if line is None or line.kind != TBT:
            return False
        try:
            when = int(fields[3])
            price = float(fields[4])
            size = float(fields[5])
            mask = int(fields[6])
        except ValueError:
            return False
        set_last_trade(line.ticker, price, size, self.empty_price, self.empty_size)
        line.items += (when, price, size, bool(mask & 1), bool(mask & 2), fields[7], fields[8])
        if not line.touched:
            self._touch(line)
        return True

    # -- batches ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Hand every touched line's batch to its sink and mark its ticker pending."""
        touched = self.touched
        if not touched:
            return
        self.touched = []
        pending = self._wrapper.pendingTickers
        for line in touched:
            line.touched = False
            items = line.items
            pending.add(line.ticker)
            if not items:
                continue
            line.items = []
            try:
                line.sink(line, items)
            except Exception as exc:  # never break the receive path
                _log.opt(exception=exc).error("tick batch handling raised {!r}", exc)
