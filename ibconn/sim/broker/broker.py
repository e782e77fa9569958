"""The broker of the simulated gateway: orders, matching, executions, accounts.

A :class:`Broker` holds gateway-wide state that outlives any client
connection (and gateway restarts, as long as the same object is reused):
every order with its status, every execution, the positions and cash of the
accounts. It is pure logic with no sockets and no asyncio. It is driven by

* order requests carrying the submitting client id
  (:meth:`Broker.place_order`, :meth:`Broker.cancel_order`,
  :meth:`Broker.global_cancel`, :meth:`Broker.what_if`);
* price updates, :meth:`Broker.on_quote`, which the market calls on every
  quote change;
* fault controls for tests (:meth:`Broker.fill`, :meth:`Broker.cancel`,
  :meth:`Broker.correct_execution`, :meth:`Broker.set_position`).

It reports what happened through events (:data:`BrokerEvent`) handed to its
listeners, synchronously and in TWS's order, for the gateway to encode and
route to the right clients. Order events carry a snapshot copy of the order.

Event sequences (each line one event, in order):

* new order: ``OpenOrder`` (Submitted or PreSubmitted), ``OrderStatus``;
  then, if it can trade at once, a fill sequence;
* fill: ``Execution``, ``OpenOrder`` (only when now Filled), ``OrderStatus``
  (Submitted with filled > 0, or Filled), ``Commission``, ``Position``,
  ``Account``; then the consequences: OCA siblings cancelled or reduced,
  bracket children activated (``OpenOrder`` + ``OrderStatus`` each);
* cancel by the client, global cancel or the ``cancel`` fault:
  ``OrderStatus`` (Cancelled), ``OrderError`` 202; children of a cancelled
  parent follow the same way;
* engine cancels (IOC/FOK remainder, OCA sibling, GTD/DAY expiry):
  ``OrderStatus`` (Cancelled) only;
* modification: ``OpenOrder``, ``OrderStatus`` (same status), then a fill
  sequence if it became marketable;
* rejection: ``OrderError`` only (nothing is stored in :attr:`Broker.orders`).
"""

from __future__ import annotations

from ibconn.core.logs import get_logger
from ibconn.sim.broker.accounts import (
    PositionSnapshot,
)
from ibconn.sim.broker.entry import OrderEntry
from ibconn.sim.broker.matching import (
    conforms_to_tick,
    touch,
)
from ibconn.sim.broker.records import (
    CommissionEvent,
    ExecutionEvent,
    JournalEntry,
    SimExecution,
    SimOrder,
)
from ibconn.sim.broker.rules import EPS

__all__ = ["Broker"]

_log = get_logger("sim")


class Broker(OrderEntry):
    """Gateway-wide orders, executions, positions and accounts (see the module doc).

    ``instruments`` are the tradable contracts; ``clock`` returns the current
    aware UTC time (for execution times and GTD expiry); ``quote_provider``
    gives the current quote of an instrument the broker has not yet seen an
    :meth:`on_quote` for (else the instrument's start price is used).
    """

    # ------------------------------------------------------------------ fault controls

    def fill(
        self, order_ref: str, quantity: float | None = None, price: float | None = None
    ) -> SimExecution:
        """Fill the working order with ``order_ref`` now, whatever the market.

        ``quantity`` defaults to the remaining quantity; ``price`` to the
        order's limit price, else the touch. Works while its client is
        disconnected (events still go to listeners). Raises ``KeyError`` when
        no working order has that reference, ``ValueError`` for a bad quantity.
        """
        order = self._working_by_ref(order_ref)
        qty = order.remaining if quantity is None else float(quantity)
        if qty <= 0 or qty > order.remaining + EPS:
            raise ValueError(f"quantity {qty} not in (0, {order.remaining}] for {order_ref!r}")
        if price is None:
            price = order.lmt_price or touch(order.action, self.quote(order.instrument))
            if price is None:
                price = order.instrument.start_price
        if order.status == "PreSubmitted":
            order.awaiting_parent = False
            order.triggered = True
            order.status = "Submitted"
        return self._execute(order, qty, float(price), 1)

    def cancel(self, order_ref: str) -> SimOrder:
        """Cancel the working order with ``order_ref`` (as if TWS cancelled it).

        Sends Cancelled + error 202 to its client. Raises ``KeyError`` when no
        working order has that reference.
        """
        order = self._working_by_ref(order_ref)
        self._cancel(order, notify=True)
        return order

    def reject(
        self, order_ref: str, reason: str = "", status: str = "Cancelled", code: int = 201
    ) -> SimOrder:
        """End an acknowledged, working order from TWS's side: orderStatus ``status``
        (``Cancelled``, ``ApiCancelled`` or ``Inactive``), then error ``code`` (201
        *Order rejected - reason:...*; 0 sends none). Raises ``KeyError`` when no
        working order has that reference, ``ValueError`` for another status."""
        if status not in {"Cancelled", "ApiCancelled", "Inactive"}:
            raise ValueError(f"status must be Cancelled, ApiCancelled or Inactive, not {status!r}")
        order = self._working_by_ref(order_ref)
        self._finish(order, status)
        order.completed_status = f"Rejected: {reason}" if reason else status
        self._emit_order(order, open_order=False)
        if code:
            text = f"Order rejected - reason:{reason}" if code == 201 else reason
            self._error(order.client_id, order.order_id, (code, text))
        for child in self._children(order):
            self._cancel(child, notify=False)
        return order

    def modify_by_hand(
        self, order_ref: str, quantity: float | None = None, price: float | None = None
    ) -> SimOrder:
        """A change made by hand in TWS: new total ``quantity`` and/or ``price`` (the limit
        price, or the stop price of a STP order), then openOrder + orderStatus and a new
        look at the market. Raises ``KeyError`` / ``ValueError`` for bad input."""
        order = self._working_by_ref(order_ref)
        if quantity is not None and not order.filled - EPS < quantity:
            raise ValueError(f"quantity {quantity} must exceed the filled {order.filled:g}")
        if price is not None and not conforms_to_tick(price, order.instrument.min_tick):
            raise ValueError(f"price {price} is off the tick {order.instrument.min_tick}")
        if quantity is not None:
            order.total_quantity = float(quantity)
        if price is not None:
            if order.order_type in {"LMT", "STP LMT"}:
                order.lmt_price = float(price)
            elif order.order_type == "STP":
                order.aux_price = float(price)
            else:
                raise ValueError(f"a {order.order_type} order has no price to change")
        order.resting = False
        self._emit_order(order)
        if not order.awaiting_parent:
            self._arrive(order)
        return order

    def roll_over_day(self) -> list[SimOrder]:
        """The trading-day rollover: working DAY orders expire (orderStatus Cancelled),
        and today's executions and completed orders become yesterday's (reqExecutions and
        reqCompletedOrders no longer return them). Returns the expired orders."""
        expired = self.expire_day_orders()
        self._day_first_exec = len(self._executions)
        self._earlier_days.update(o.perm_id for o in self._orders.values() if o.is_done)
        return expired

    def forget_client_ids(self) -> list[SimOrder]:
        """What a TWS restart does to working API orders: they lose their client id and
        belong to client 0 (as orders entered in TWS do), so the client that placed them
        no longer sees or cancels them by its ids. Returns the orders changed."""
        changed = []
        for order in self._orders.values():
            if order.client_id == 0 or order.is_done or (0, order.order_id) in self._by_key:
                continue
            del self._by_key[(order.client_id, order.order_id)]
            order.client_id = 0
            self._by_key[(0, order.order_id)] = order
            changed.append(order)
        return changed

    def lose_order(self, order_ref: str) -> SimOrder:
        """Forget the working order with ``order_ref`` without a word, as a TWS that lost
        it would: no status, no open or completed order, a cancel answered with 10147.
        Raises ``KeyError`` when no working order has that reference."""
        order = self._working_by_ref(order_ref)
        del self._orders[order.perm_id]
        self._by_key.pop((order.client_id, order.order_id), None)
        self._live.get(order.instrument.con_id, {}).pop(order.perm_id, None)
        return order

    def _working_by_ref(self, order_ref: str) -> SimOrder:
        for order in reversed(list(self._orders.values())):
            if order.order_ref == order_ref and order.is_working:
                return order
        raise KeyError(f"no working order with orderRef {order_ref!r}")

    def correct_execution(self, exec_id: str, price: float) -> SimExecution:
        """Correct the price of an execution, as TWS does.

        Emits a new execution with the same exec id prefix and the next
        suffix (``.01.01`` -> ``.01.02``), the corrected price and the same
        commission, followed by its commission report, position and account
        events. Positions, cash and P&L are recomputed as if the execution had
        happened at ``price``. Raises ``KeyError`` for an unknown exec id.
        """
        original = next((e for e in self._executions if e.exec_id == exec_id), None)
        if original is None:
            raise KeyError(f"unknown exec id {exec_id!r}")
        prefix = original.exec_prefix
        versions = [e for e in self._executions if e.exec_prefix == prefix]
        latest = versions[-1]
        suffix = max(int(e.exec_id.rsplit(".", 1)[1]) for e in versions) + 1
        new_id = f"{prefix}.{suffix:02d}"
        base_id = versions[0].exec_id
        entry = next(f for f in self._fills if f.exec_id == base_id)
        entry.price = float(price)
        realized = self._replay_ledger(base_id)
        order = self._orders.get(original.perm_id)
        cum_qty, avg_price = latest.cum_qty, latest.avg_price
        if order is not None:
            order.filled_value += (price - latest.price) * latest.shares
            order.avg_fill_price = order.filled_value / order.filled if order.filled else 0.0
            avg_price = order.avg_fill_price
            if latest.exec_id == self._last_exec_of(order).exec_id:
                order.last_fill_price = float(price)
        ex = SimExecution(
            exec_id=new_id,
            order_id=latest.order_id,
            client_id=latest.client_id,
            perm_id=latest.perm_id,
            account=latest.account,
            instrument=latest.instrument,
            exchange=latest.exchange,
            side=latest.side,
            shares=latest.shares,
            price=float(price),
            time=self.clock(),
            cum_qty=cum_qty,
            avg_price=avg_price,
            order_ref=latest.order_ref,
            commission=latest.commission,
            commission_currency=latest.commission_currency,
            realized_pnl=realized,
            last_liquidity=latest.last_liquidity,
            corrects=latest.exec_id,
        )
        self._executions.append(ex)
        self._emit(ExecutionEvent(ex))
        self._emit(CommissionEvent(ex))
        self._emit_position(ex.account, ex.instrument)
        return ex

    def _last_exec_of(self, order: SimOrder) -> SimExecution:
        return [e for e in self._executions if e.perm_id == order.perm_id][-1]

    def set_position(
        self, account: str, symbol: str, quantity: float, avg_cost: float
    ) -> PositionSnapshot:
        """Make ``account`` hold ``quantity`` of ``symbol`` at ``avg_cost`` (no cash moves).

        ``avg_cost`` is per unit as TWS reports it (times the multiplier for
        futures). Emits position and account events. Raises ``KeyError`` for
        an unknown symbol.
        """
        inst = self.instrument_for(symbol)
        mark = self._mark(inst)
        self.ledger.set_position(account, inst, quantity, avg_cost, mark)
        self._fills.append(
            JournalEntry("", account, inst, 0.0, 0.0, 0.0, override=(quantity, avg_cost, mark))
        )
        self._emit_position(account, inst)
        snap = self.ledger.position(account, inst.con_id, self._mark)
        assert snap is not None
        return snap
