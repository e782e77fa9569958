"""The registry of TWS lines: which instruments ibconn follows and the requests that serve them.

:class:`LineRegistry` owns the map of instruments and the map of request ids
to lines. :meth:`LineRegistry.reconcile` requests the lines an instrument's
feeds, holds and quote snapshots need and cancels those nobody needs, so a line
lives exactly while something uses it; an instrument nobody uses is forgotten
(its validation counters are kept in a retired total). Each line of the tick
tap (``ibconn/wire/tick_decoding.py``) is registered with the ingest sinks given
to the constructor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.logs import get_logger
from ibconn.market_data.lines import MKT, RTB, TBT, Feed, Hold, InstrumentState, Line, LineInfo
from ibconn.market_data.validation import ValidationStats
from ibconn.wire.tick_decoding import TapLine, TickTap

if TYPE_CHECKING:
    from ib_async import IB

__all__ = ["LineRegistry", "TapSink"]

_log = get_logger("market_data")

TapSink = Callable[[TapLine, list[Any]], None]
"""Takes a batch of the tick tap for one line (see :class:`~ibconn.wire.tick_decoding.TickTap`)."""


class LineRegistry:
    """Instruments, their TWS lines, and the requests and cancellations of those lines."""

    def __init__(
        self,
        instruments: dict[int, InstrumentState],
        by_req_id: dict[int, Line],
        *,
        crossed_tolerance: float,
        tick_sink: TapSink,
        trade_sink: TapSink,
    ) -> None:
        self.instruments = instruments
        """Every followed instrument by ``conId`` (shared with the ingest, which reads it)."""
        self.by_req_id = by_req_id
        """Every requested line by TWS request id (shared with the ingest, which reads it)."""
        self._tolerance = crossed_tolerance
        self._sinks = {MKT: tick_sink, TBT: trade_sink}
        self.ib: IB | None = None
        self.dropped_closed: dict[str, int] = {}
        """Items dropped by the streams of feeds closed since, per feed kind."""
        self.tap: TickTap | None = None
        self.live = False
        """Whether the session is ready: lines are requested now, else on the next resync."""
        self.closed = False
        """Whether the service was closed (and nothing was acquired since)."""
        self.retired = ValidationStats()
        """The validation counters of instruments no longer followed."""

    def attach(self, ib: IB, tap: TickTap | None) -> None:
        """Use ``ib`` (and the tick tap of its receive path, if any) for requests."""
        self.ib = ib
        if tap is not None:
            self.tap = tap

    def instrument(self, resolved: ResolvedContract) -> InstrumentState:
        """The state of ``resolved``, created on first use."""
        inst = self.instruments.get(resolved.con_id)
        if inst is None:
            inst = InstrumentState(resolved, self._tolerance)
            self.instruments[resolved.con_id] = inst
        return inst

    def release_feed(self, feed: Feed) -> None:
        """A consumer of ``feed`` ended; the last one closes it and frees its lines."""
        if feed.closed:
            return
        feed.consumers -= 1
        if feed.consumers > 0:
            return
        feed.closed = True
        dropped = feed.broadcast.dropped_total
        if dropped:
            kind = feed.kind.value
            self.dropped_closed[kind] = self.dropped_closed.get(kind, 0) + dropped
        feed.broadcast.close()
        inst = feed.inst
        if inst.feeds.get(feed.key) is feed:
            del inst.feeds[feed.key]
        self.reconcile(inst)

    def release_hold(self, hold: Hold) -> None:
        """A held line was released (idempotent)."""
        inst = hold.held()
        hold.detach()
        if inst is not None and hold in inst.holds:
            inst.holds.discard(hold)
            self.reconcile(inst)

    def reconcile(self, inst: InstrumentState) -> None:
        """Request the lines the instrument's feeds need; cancel those nobody needs."""
        needed = inst.needed_lines()
        for kind in [kind for kind in inst.lines if kind not in needed]:
            line = inst.lines.pop(kind)
            self.cancel_line(line)
        for kind in needed:
            if kind not in inst.lines:
                line = Line(inst, kind)
                inst.lines[kind] = line
                if self.live:
                    self.request(line)
        if not inst.lines and not inst.feeds and not inst.holds and not inst.quote_waiters:
            if inst.backfill is not None and inst.backfill.task is not None:
                inst.backfill.task.cancel()
            self.retire(inst)
            if self.instruments.get(inst.con_id) is inst:
                del self.instruments[inst.con_id]

    def retire(self, inst: InstrumentState) -> None:
        """Keep the validation counters of an instrument that is being forgotten."""
        self.retired = ValidationStats.total([self.retired, inst.validator.stats()])

    # -- TWS requests --------------------------------------------------------------

    def request(self, line: Line) -> None:
        """Request ``line`` at TWS (when the client is ready) and route its request id."""
        ib = self.ib
        if ib is None or not ib.client.isReady():
            return
        inst = line.inst
        contract = inst.resolved.contract
        try:
            if line.kind == MKT:
                inst.reset_quote()
                ticker = ib.reqMktData(contract, "", False, False)
                line.handle = ticker
                line.req_id = ib.wrapper.ticker2ReqId["mktData"].get(ticker)
            elif line.kind == TBT:
                ticker = ib.reqTickByTickData(contract, "AllLast", 0, False)
                line.handle = ticker
                line.req_id = ib.wrapper.ticker2ReqId["AllLast"].get(ticker)
            else:
                what = "MIDPOINT" if inst.sec_type == "CASH" else "TRADES"
                bars = ib.reqRealTimeBars(contract, 5, what, False)
                line.handle = bars
                line.req_id = bars.reqId
                line.skip_first = True  # the first real-time bar may be partial
        except ConnectionError:
            line.active = False
            return
        if line.req_id is not None:
            self.by_req_id[line.req_id] = line
            tap = self.tap
            if tap is not None and line.kind != RTB:
                sink = self._sinks[line.kind]
                line.tap = tap.own(line.req_id, line.handle, line.kind, sink, line)
        line.active = True
        line.stale = False
        line.last_data = asyncio.get_running_loop().time()
        _log.debug("requested {} {} (reqId {})", line.kind, inst.symbol, line.req_id)

    def cancel_line(self, line: Line) -> None:
        """Cancel at TWS (when connected) and forget the line."""
        ib = self.ib
        if line.active and ib is not None and ib.client.isConnected() and line.handle is not None:
            contract = line.inst.resolved.contract
            try:
                if line.kind == MKT:
                    ib.cancelMktData(contract)
                elif line.kind == TBT:
                    ib.cancelTickByTickData(contract, "AllLast")
                else:
                    ib.cancelRealTimeBars(line.handle)
            except ConnectionError:
                pass
            _log.debug("cancelled {} {} (reqId {})", line.kind, line.inst.symbol, line.req_id)
            self.unmap(line)
            line.active = False
            line.handle = None
            return
        self.forget_line(line)

    def forget_line(self, line: Line) -> None:
        """Forget a line that TWS no longer serves, without a message to TWS."""
        self.unmap(line)
        ib = self.ib
        handle = line.handle
        if ib is not None and handle is not None:
            wrapper = ib.wrapper
            if line.kind == MKT:
                wrapper.endTicker(handle, "mktData")
            elif line.kind == TBT:
                wrapper.endTicker(handle, "AllLast")
            else:
                wrapper.endSubscription(handle)
        line.handle = None
        line.active = False
        line.req_id = None

    def drop(self, line: Line) -> None:
        """The session ended: the line is gone at TWS; keep it to request it again."""
        self.unmap(line)
        line.handle = None
        line.active = False
        line.req_id = None
        line.stale = False

    def unmap(self, line: Line) -> None:
        """Stop routing the line's request id to it (and take it off the tick tap)."""
        if line.req_id is not None:
            self.by_req_id.pop(line.req_id, None)
            tap = self.tap
            if tap is not None and tap.lines.get(str(line.req_id)) is line.tap is not None:
                tap.disown(line.req_id)
        line.tap = None

    # -- reporting -----------------------------------------------------------------

    def infos(self) -> tuple[LineInfo, ...]:
        """Every TWS subscription held, with its feeds and consumers."""
        out: list[LineInfo] = []
        try:
            now: float | None = asyncio.get_running_loop().time()  # the clock of last_data
        except RuntimeError:  # called outside the event loop: no age
            now = None
        for inst in self.instruments.values():
            for kind, line in inst.lines.items():
                feeds = inst.dependents(kind)
                consumers = sum(feed.consumers for feed in feeds)
                if kind == MKT:
                    consumers += len(inst.holds) + len(inst.quote_waiters)
                out.append(
                    LineInfo(
                        symbol=inst.symbol,
                        con_id=inst.con_id,
                        kind=kind,
                        req_id=line.req_id,
                        active=line.active,
                        stale=line.stale,
                        feeds=tuple(
                            feed.kind.value + (f" {feed.seconds}" if feed.seconds else "")
                            for feed in feeds
                        ),
                        consumers=consumers,
                        data_age=(
                            now - line.last_data
                            if now is not None and line.active and line.last_data
                            else None
                        ),
                    )
                )
        return tuple(out)

    def stream_drops(self) -> dict[str, int]:
        """Items dropped (or conflated) by consumer streams, ever, per feed kind."""
        drops = dict(self.dropped_closed)
        for inst in self.instruments.values():
            for feed in inst.feeds.values():
                kind = feed.kind.value
                drops[kind] = drops.get(kind, 0) + feed.broadcast.dropped_total
        return drops

    def validation(self) -> ValidationStats:
        """What the validation rules rejected or flagged, over every instrument."""
        return ValidationStats.total(
            [self.retired, *(inst.validator.stats() for inst in self.instruments.values())]
        )

    def consumers(self) -> int:
        """Streams and held lines over every instrument."""
        return sum(
            feed.consumers for inst in self.instruments.values() for feed in inst.feeds.values()
        ) + sum(len(inst.holds) for inst in self.instruments.values())
