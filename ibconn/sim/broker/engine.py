"""The matching engine: :class:`MatchingEngine` matches working orders against quotes,
executes fills, and applies their consequences (OCA groups, bracket children, expiry)."""

from __future__ import annotations

import copy

from ibconn.core.logs import get_logger
from ibconn.sim.broker.accounts import (
    DEFAULT_COMMISSIONS,
    order_commission,
)
from ibconn.sim.broker.core import BrokerCore
from ibconn.sim.broker.matching import (
    BookQuote,
    limit_marketable,
    stop_triggered,
    touch,
    trail_stop_after,
)
from ibconn.sim.broker.records import (
    AccountEvent,
    CommissionEvent,
    ExecutionEvent,
    JournalEntry,
    OpenOrderEvent,
    OrderStatusEvent,
    PositionEvent,
    SimExecution,
    SimOrder,
    parse_tws_time,
)
from ibconn.sim.broker.rules import CANCELED, EPS, STOP_TYPES, floor_to_increment
from ibconn.sim.market.instruments import Instrument

__all__ = ["MatchingEngine"]

_log = get_logger("sim")


class MatchingEngine(BrokerCore):
    """Matching and fills on top of the broker's state (see the module doc)."""

    # ------------------------------------------------------------------ market

    def on_quote(
        self,
        instrument: Instrument,
        bid: float | None,
        ask: float | None,
        last: float | None,
    ) -> None:
        """A new quote for ``instrument``: trail, trigger and fill its working orders.

        Each working order fills at most ``max_fill_size`` per call.
        """
        quote = BookQuote.of(bid, ask, last)
        self._quotes[instrument.con_id] = quote
        live = self._live.get(instrument.con_id)
        if not live:
            return
        for order in list(live.values()):
            if order.is_working and not order.awaiting_parent:
                arrival = order.pending_arrival
                order.pending_arrival = False
                self._match(order, quote, arrival=arrival)

    def expire_day_orders(self) -> list[SimOrder]:
        """End of day: cancel every working DAY order (engine cancel, no 202)."""
        expired = [o for o in self._orders.values() if not o.is_done and o.tif == "DAY"]
        for order in expired:
            self._cancel(order, notify=False)
        return expired

    def _init_trail(self, order: SimOrder, quote: BookQuote) -> None:
        ref = quote.mark
        if order.trail_stop_price is not None or ref is None:
            return
        order.trail_stop_price = trail_stop_after(
            order.action, None, ref,
            amount=order.aux_price, percent=order.trailing_percent, tick=order.instrument.min_tick,
        )  # fmt: skip

    def _expired(self, order: SimOrder) -> bool:
        if order.tif != "GTD":
            return False
        until = parse_tws_time(order.good_till_date)
        return until is not None and self.clock() >= until

    def _arrive(self, order: SimOrder) -> None:
        """First look at the market for a new, modified or activated order.

        Immediate without :attr:`defer`; else scheduled through it (the
        gateway's fill delay). A quote update arriving first does the job.
        """
        if self.defer is None:
            self._match(order, self.quote(order.instrument), arrival=True)
            return
        order.pending_arrival = True

        def run() -> None:
            if order.pending_arrival and order.is_working and not order.awaiting_parent:
                order.pending_arrival = False
                self._match(order, self.quote(order.instrument), arrival=True)

        self.defer(run)

    def _match(self, order: SimOrder, quote: BookQuote, *, arrival: bool) -> None:
        """Try to trigger and fill ``order`` against ``quote`` (one chunk at most).

        Isolated: an order whose matching fails is cancelled (Cancelled + 202 to
        its client) and logged, and never stops the matching of other orders.
        """
        try:
            self._match_once(order, quote, arrival=arrival)
        except Exception:
            _log.exception(
                "matching order {}/{} failed; cancelling it", order.client_id, order.order_id
            )
            self._abandon(order)

    def _abandon(self, order: SimOrder) -> None:
        """Take an order the engine cannot handle off the market, telling its client."""
        live = self._live.get(order.instrument.con_id)
        if live is not None:
            live.pop(order.perm_id, None)
        try:
            self._cancel(order, notify=True)
        except Exception:
            _log.exception("cancelling order {}/{} failed", order.client_id, order.order_id)
            order.status = "Cancelled"

    def _match_once(self, order: SimOrder, quote: BookQuote, *, arrival: bool) -> None:
        if self._expired(order):
            self._cancel(order, notify=False)
            return
        if order.order_type in STOP_TYPES and not order.triggered:
            if order.order_type == "TRAIL":
                ref = quote.mark
                if ref is not None:
                    order.trail_stop_price = trail_stop_after(
                        order.action, order.trail_stop_price, ref,
                        amount=order.aux_price, percent=order.trailing_percent,
                        tick=order.instrument.min_tick,
                    )  # fmt: skip
            stop = order.stop_price
            if stop is None or not stop_triggered(order.action, stop, quote):
                return
            order.triggered = True
            order.status = "Submitted"
            _log.debug("order {}/{} triggered at {}", order.client_id, order.order_id, stop)
            self._emit_order(order, open_order=False)
            arrival = True
        limit = order.lmt_price if order.order_type in {"LMT", "STP LMT"} else None
        price = touch(order.action, quote)
        marketable = price is not None and (
            limit is None or limit_marketable(order.action, limit, quote)
        )
        if not marketable or price is None:
            if order.tif in {"IOC", "FOK"}:
                self._cancel(order, notify=False)
            else:
                order.resting = True
            return
        if limit is not None and order.resting and not arrival:
            price = limit
        remaining = order.remaining
        qty = remaining
        if self.max_fill_size is not None and self.max_fill_size > 0:
            step = order.instrument.size_increment
            qty = min(remaining, max(step, floor_to_increment(self.max_fill_size, step)))
        if order.tif == "FOK" and qty < remaining - EPS:
            self._cancel(order, notify=False)
            return
        liquidity = 1 if (order.resting and not arrival) else 2
        self._execute(order, qty, price, liquidity)
        if order.tif in {"IOC", "FOK"} and not order.is_done:
            self._cancel(order, notify=False)

    # ------------------------------------------------------------------ fills

    def _next_exec_id(self) -> str:
        self._exec_seq += 1
        return f"{self._exec_seq:08x}.{self._exec_stamp}.01.01"

    def _exec_exchange(self, inst: Instrument) -> str:
        if inst.exchange == "SMART" and inst.primary_exchange:
            return inst.primary_exchange
        return inst.exchange

    def _execute(self, order: SimOrder, qty: float, price: float, liquidity: int) -> SimExecution:
        inst = order.instrument
        mult = inst.multiplier
        prior_value = order.filled_value
        order.filled_value = prior_value + qty * price
        order.filled += qty
        order.avg_fill_price = order.filled_value / order.filled
        order.last_fill_price = price
        rate = self.commissions.get(inst.sec_type, DEFAULT_COMMISSIONS["STK"])
        total_commission = order_commission(rate, order.filled, order.filled_value * mult)
        commission = max(0.0, round(total_commission - order.commission, 6))
        order.commission += commission
        signed = qty if order.action == "BUY" else -qty
        realized = self.ledger.apply_fill(order.account, inst, signed, price, commission)
        exec_id = self._next_exec_id()
        self._fills.append(JournalEntry(exec_id, order.account, inst, signed, price, commission))
        ex = SimExecution(
            exec_id=exec_id,
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            account=order.account,
            instrument=inst,
            exchange=self._exec_exchange(inst),
            side="BOT" if order.action == "BUY" else "SLD",
            shares=qty,
            price=price,
            time=self.clock(),
            cum_qty=order.filled,
            avg_price=order.avg_fill_price,
            order_ref=order.order_ref,
            commission=commission,
            commission_currency=rate.currency,
            realized_pnl=realized,
            last_liquidity=liquidity,
        )
        self._executions.append(ex)
        if order.filled >= order.total_quantity - EPS:
            self._finish(order, "Filled")
        _log.debug(
            "exec {} {} {} {} @ {} (order {}/{})",
            exec_id, ex.side, qty, inst.symbol, price, order.client_id, order.order_id,
        )  # fmt: skip
        self._emit(ExecutionEvent(ex))
        snap = copy.copy(order)
        if order.status == "Filled":
            self._emit(OpenOrderEvent(snap))
        self._emit(OrderStatusEvent(snap))
        self._emit(CommissionEvent(ex))
        self._emit_position(order.account, inst)
        self._after_fill(order, qty)
        return ex

    def _emit_position(self, account: str, inst: Instrument) -> None:
        pos = self.ledger.position(account, inst.con_id, self._mark)
        if pos is not None:
            self._emit(PositionEvent(pos))
        self._emit(AccountEvent(account))

    def _finish(self, order: SimOrder, status: str) -> None:
        order.status = status
        order.completed_time = self.clock()
        if status == "Filled":
            order.completed_status = f"Filled Size: {order.filled:g}"
        else:
            order.completed_status = "Cancelled by Trader"
        live = self._live.get(order.instrument.con_id)
        if live is not None:
            live.pop(order.perm_id, None)

    def _oca_siblings(self, order: SimOrder) -> tuple[list[SimOrder], int]:
        if order.oca_group:
            members = [
                o
                for o in self._orders.values()
                if o is not order
                and not o.is_done
                and o.account == order.account
                and o.oca_group == order.oca_group
            ]
            return members, order.oca_type or 1
        if order.parent_id:
            members = [
                o
                for o in self._orders.values()
                if o is not order
                and not o.is_done
                and not o.oca_group
                and o.client_id == order.client_id
                and o.parent_id == order.parent_id
            ]
            return members, 2
        return [], 0

    def _after_fill(self, order: SimOrder, qty: float) -> None:
        siblings, oca_type = self._oca_siblings(order)
        for sib in siblings:
            if sib.is_done:
                continue
            if oca_type == 1:
                self._cancel(sib, notify=False)
            else:
                new_total = sib.total_quantity - qty
                if new_total <= sib.filled + EPS:
                    self._cancel(sib, notify=False)
                else:
                    sib.total_quantity = new_total
                    if sib.status != "PendingSubmit":
                        self._emit_order(sib)
        if order.status == "Filled":
            self._activate_children(order)

    def _children(self, order: SimOrder) -> list[SimOrder]:
        return [
            o
            for o in self._orders.values()
            if o.parent_id == order.order_id
            and o.client_id == order.client_id
            and o.parent_perm_id == order.perm_id
            and not o.is_done
        ]

    def _activate_children(self, parent: SimOrder) -> None:
        children = [c for c in self._children(parent) if c.awaiting_parent]
        for child in children:
            child.awaiting_parent = False
            self._set_working_status(child)
            if child.order_type == "TRAIL":
                self._init_trail(child, self.quote(child.instrument))
            self._emit_order(child)
        for child in children:
            if child.is_working:
                self._arrive(child)

    def _cancel(self, order: SimOrder, *, notify: bool) -> None:
        if order.is_done:
            return
        self._finish(order, "Cancelled")
        if not notify:
            order.completed_status = "Cancelled by System"
        _log.debug("order {}/{} cancelled", order.client_id, order.order_id)
        self._emit_order(order, open_order=False)
        if notify:
            self._error(order.client_id, order.order_id, CANCELED)
        for child in self._children(order):
            self._cancel(child, notify=notify)

    def _set_working_status(self, order: SimOrder) -> None:
        if order.awaiting_parent or (order.order_type in STOP_TYPES and not order.triggered):
            order.status = "PreSubmitted"
        else:
            order.status = "Submitted"
