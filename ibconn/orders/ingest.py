"""Event ingest: what ib_async reports about orders, applied to the registry.

:class:`OrderIngest` handles ib_async's events (each guarded: a handler that
raises is logged and counted, never breaks ib_async's dispatch):

* ``orderStatusEvent``: the status, with TWS's ``Submitted``-with-a-fill
  reported as ``PARTIALLY_FILLED``; ib_async's invented ``ValidationError``
  status (a warning about a live order) and the statuses it sets itself
  after an error are ignored here: ``errorEvent`` classifies those codes
  with :func:`ibconn.core.codes.classify`, which knows whether the order is live;
* ``execDetailsEvent`` / ``commissionReportEvent``: fills, deduplicated by
  exec id by ibconn itself (ib_async appends a correction as a new fill and
  fires no event for fills it gets from ``reqExecutions``), with corrections
  replacing the fill they correct (:class:`~ibconn.orders.fills.FillLedger`);
* ``openOrderEvent``: perm ids, the acknowledgement of modifications, and the
  adoption of working orders of this client id placed by an earlier run;
* the pacer's reports of which ``placeOrder`` messages were sent or dropped.

It also holds the state changes the resync shares: :meth:`OrderIngest.adopt`,
:meth:`OrderIngest.lose`, :meth:`OrderIngest.not_sent`.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from ib_async import IB, Trade
from ib_async import Fill as IBFill
from ib_async import OrderStatus as IBOrderStatus

from ibconn.connection.session import move_handlers
from ibconn.contracts.resolver import trading_symbol
from ibconn.core.codes import CodeCategory, Severity, classify
from ibconn.core.logs import get_logger
from ibconn.core.numbers import number_or_none
from ibconn.core.tasks import ServiceTasks
from ibconn.errors import ConnectionLostError, OrderRejectedError
from ibconn.orders.convert import map_tws_status, spec_from_order, to_fill, with_commission
from ibconn.orders.enums import OrderStatus, UpdateKind
from ibconn.orders.fills import LedgerOutcome
from ibconn.orders.models import EPS, OrderError
from ibconn.orders.ports import AlertPublisher, ContractSource
from ibconn.orders.records import OrderRecord
from ibconn.orders.registry import OrderRegistry
from ibconn.orders.updates import OrderPublisher
from ibconn.pacing import DroppedMessage
from ibconn.wire.ib_compat import pending_requests

__all__ = ["OrderIngest"]

_log = get_logger("orders")

_PLACE_ORDER = 3
_CANCEL_NOT_FOUND = 10147


class OrderIngest:
    """Applies ib_async's order events to the registry and publishes what changed."""

    def __init__(
        self,
        registry: OrderRegistry,
        publisher: OrderPublisher,
        tasks: ServiceTasks,
        contracts: ContractSource,
        alerts: AlertPublisher,
    ) -> None:
        self._reg = registry
        self._pub = publisher
        self._tasks = tasks
        self._contracts = contracts
        self._alerts = alerts
        self.ib: IB | None = None
        """The ``IB`` whose events are handled (the current session's)."""

    def install(self, ib: IB) -> None:
        """Handle the events of ``ib`` (and no longer those of the previous session's)."""
        move_handlers(
            self.ib,
            ib,
            [
                ("openOrderEvent", self._on_open_order),
                ("orderStatusEvent", self._on_status),
                ("execDetailsEvent", self._on_exec),
                ("commissionReportEvent", self._on_commission),
                ("errorEvent", self._on_error),
            ],
        )
        self.ib = ib
        self._pub.ib = ib

    def message_sent(self, msg_id: int, request_id: int | None) -> None:
        """The pacer wrote a message: a placeOrder that left ibconn was sent."""
        if msg_id == _PLACE_ORDER and request_id is not None:
            record = self._reg.by_id.get(request_id)
            if record is not None:
                record.sent = True
                return
            writing = self._reg.writing
            if writing is not None and writing.order_id == request_id:
                writing.sent = True

    def message_dropped(self, dropped: DroppedMessage) -> None:
        """The pacer dropped a message unsent: an order that never left ibconn."""
        if not dropped.is_order:
            return
        writing = self._reg.writing
        if writing is not None and (
            dropped.order_ref == writing.order_ref or dropped.request_id == writing.order_id
        ):
            writing.dropped = dropped  # the placer reports it: its record is not made yet
            return
        self._tasks.guard("dropped", lambda: self._handle_dropped(dropped))

    def _handle_dropped(self, dropped: DroppedMessage) -> None:
        record = self._reg.by_ref.get(dropped.order_ref or "")
        if record is None and dropped.request_id is not None:
            record = self._reg.by_id.get(dropped.request_id)
        if record is None:
            return
        error = dropped.error
        if record.change is not None and not record.change.done():
            failure = ConnectionLostError(
                f"the change to order {record.order_ref} was NOT sent ({dropped.reason}); "
                "the order is unchanged at TWS"
            )
            failure.__cause__ = error
            record.change.set_exception(failure)
            return
        if record.status is OrderStatus.PENDING_SUBMIT and not record.sent:
            record.dropped = error
            self.not_sent(record, dropped.reason)

    def _on_open_order(self, trade: Trade) -> None:
        if self._reg.sync.live:
            self._tasks.guard("openOrder", lambda: self._handle_open_order(trade))

    def _handle_open_order(self, trade: Trade) -> None:
        record = self._reg.find(trade)
        if record is None:
            if self.adoptable(trade):
                self.adopt(trade, announce=True)
            return
        change = record.change
        if change is not None and not change.done() and record.pending_change is not None:
            record.apply_change(*record.pending_change)  # before TWS's values are absorbed
            record.pending_change = None
        self._reg.link(record, trade)
        if change is not None and not change.done():
            change.set_result(None)
            self._pub.wake()
            self._pub.handoff.hold()  # the caller resumes before this update's delivery
            self._pub.publish(record, UpdateKind.MODIFIED)

    def _on_status(self, trade: Trade) -> None:
        if self._reg.sync.live:
            self._tasks.guard("orderStatus", lambda: self._handle_status(trade))

    def _handle_status(self, trade: Trade) -> None:
        log = trade.log[-1] if trade.log else None
        if log is not None and log.errorCode:
            return  # ib_async's reaction to an error code: _on_error decides
        record = self._reg.find(trade)
        if record is None:
            return
        self._reg.link(record, trade)
        self.apply_status(record, trade.orderStatus)

    def _on_exec(self, trade: Trade, fill: IBFill) -> None:
        if self._reg.sync.live:
            self._tasks.guard("execDetails", lambda: self.ingest_fill(fill, trade, publish=True))

    def _on_commission(self, trade: Trade, fill: IBFill, report: Any) -> None:
        if self._reg.sync.live:
            self._tasks.guard("commissionReport", lambda: self._handle_commission(report))

    def _handle_commission(self, report: Any) -> None:
        exec_id = str(report.execId)
        record = self._reg.exec_owner.get(exec_id)
        if record is None:
            self._pub.commission_arrived(exec_id, lambda fill: with_commission(fill, report))
            self._pub.flush_fills()
            return
        updated = record.ledger.set_commission(
            exec_id,
            float(report.commission),
            report.currency or None,
            number_or_none(report.realizedPNL),
        )
        if updated is None:
            return
        record.updated_at = datetime.now(UTC)
        self._pub.commission_arrived(exec_id, lambda _: updated)
        self._pub.publish(record, UpdateKind.COMMISSION, fill=updated)
        self._pub.flush_fills()

    def _on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        if req_id > 0 and self._reg.sync.live:
            self._tasks.guard("error", lambda: self._handle_error(req_id, code, message))

    def _handle_error(self, req_id: int, code: int, message: str) -> None:
        record = self._reg.by_id.get(req_id)
        if record is None:
            return
        settles = (record.ack, record.change, record.cancel_failed)
        if record.waiters or any(f is not None and not f.done() for f in settles):
            self._pub.wake()  # whatever this error settles, its waiter resumes first
        ib = self.ib
        if ib is not None and req_id in pending_requests(ib):
            return  # a request id, not an order id
        trade = (
            ib.wrapper.trades.get((self._reg.sync.client_id, req_id)) if ib is not None else None
        )
        advanced = (trade.advancedError or None) if trade is not None else None
        pending = not record.status.is_acknowledged
        info = classify(code, message, order_live=not pending, advanced_reject=advanced or "")
        error = OrderError(code=code, text=message, advanced_reject=advanced)
        category = info.category
        if category is CodeCategory.ORDER_CANCELLED:
            if not record.status.is_done:
                self._pub.set_status(record, OrderStatus.CANCELLED, UpdateKind.STATUS)
            return
        if category is CodeCategory.CANCEL_FAILED:
            if code == _CANCEL_NOT_FOUND and record.status.is_working:
                # TWS does not know the order (any more): nothing works under this id
                self.lose(record, error)
                if record.cancel_failed is not None and not record.cancel_failed.done():
                    record.cancel_failed.set_result(error)
                return
            record.last_error = error
            if record.cancel_failed is not None and not record.cancel_failed.done():
                record.cancel_failed.set_result(error)
            self._pub.publish(record, UpdateKind.ERROR, error=error)
            return
        if category in (CodeCategory.ORDER_WARNING, CodeCategory.WARNING, CodeCategory.HARMLESS):
            record.last_error = error
            _log.warning("TWS warns about order {}: {} {}", record.order_ref, code, message)
            self._pub.publish(record, UpdateKind.WARNING, error=error)
            return
        if info.severity.level_no < Severity.ERROR.level_no:
            return
        record.last_error = error
        _log.warning("TWS refused order {}: {} {}", record.order_ref, code, message)
        if record.change is not None and not record.change.done():
            record.change.set_exception(
                OrderRejectedError(
                    f"TWS refused the change to order {record.order_ref}: {code} {message}",
                    code=code,
                    text=message,
                    order_ref=record.order_ref,
                    advanced_reject=advanced,
                )
            )
            self._pub.publish(record, UpdateKind.ERROR, error=error)
            return
        if pending:
            record.status = OrderStatus.REJECTED
            record.updated_at = datetime.now(UTC)
            rejected = (
                f"TWS rejected order {record.order_ref} ({record.ib_order.action} "
                f"{record.quantity:g} {record.symbol} {record.ib_order.orderType}): "
                f"{code} {message}"
            )
            # the alert: ibconn/core/code_alerts.py, like every TWS code of an error class
            if record.ack is not None and not record.ack.done():
                record.ack.set_exception(
                    OrderRejectedError(
                        rejected,
                        code=code,
                        text=message,
                        order_ref=record.order_ref,
                        advanced_reject=advanced,
                    )
                )
            self._pub.publish(record, UpdateKind.ERROR, error=error)
            return
        self._pub.publish(record, UpdateKind.ERROR, error=error)

    def ingest_fill(self, ib_fill: IBFill, trade: Trade | None, *, publish: bool) -> None:
        """Count an execution once, on its order's ledger (or as an orphan); with ``publish``
        it goes out on ``order_updates()`` and ``fills()``."""
        execution = ib_fill.execution
        exec_id = execution.execId
        sync = self._reg.sync
        if not exec_id or exec_id in sync.seen_exec:
            return
        sync.seen_exec.add(exec_id)
        record = self._reg.by_ref.get(execution.orderRef) if execution.orderRef else None
        if record is None and execution.permId:
            record = self._reg.by_perm.get(execution.permId)
        if record is None and trade is not None:
            record = self._reg.find(trade)
        if record is None and execution.clientId == sync.client_id and execution.orderId > 0:
            candidate = self._reg.by_id.get(execution.orderId)
            if candidate is not None and candidate.order_ref == (
                execution.orderRef or candidate.order_ref
            ):
                record = candidate
        fill = to_fill(ib_fill, record)
        if record is None:
            orphan = self._reg.orphans.add(fill)
            if publish and orphan.counted:
                self._pub.queue_fill(orphan.fill)
            return
        result = record.ledger.add(fill)
        if not result.counted:
            return
        self._reg.exec_owner[exec_id] = record
        record.updated_at = datetime.now(UTC)
        if execution.permId and not record.perm_id:
            self._reg.learn_perm(record, execution.permId)
        kind = (
            UpdateKind.CORRECTION if result.outcome is LedgerOutcome.CORRECTION else UpdateKind.FILL
        )
        if (
            record.status in (OrderStatus.SUBMITTED, OrderStatus.PRE_SUBMITTED)
            and record.filled > EPS
            and record.remaining > EPS
        ):
            record.status = OrderStatus.PARTIALLY_FILLED
        if publish:
            self._pub.publish(record, kind, fill=result.fill)
            self._pub.queue_fill(result.fill)
            if self._filled_by_executions(record):
                # TWS's own rule, applied as soon as the execution is in (its "Filled"
                # status follows a few messages later and then changes nothing).
                self._pub.set_status(record, OrderStatus.FILLED, UpdateKind.STATUS)

    @staticmethod
    def _filled_by_executions(record: OrderRecord) -> bool:
        """Whether the executions received add up to the whole order (and nothing could
        still change its quantity: no modification waits for TWS's answer)."""
        return (
            record.status.is_working  # (an UNKNOWN order is the resync's to resolve)
            and record.ledger.filled >= record.quantity - EPS
            and record.quantity > EPS
            and (record.change is None or record.change.done())
        )

    def apply_status(
        self, record: OrderRecord, status: IBOrderStatus, kind: UpdateKind = UpdateKind.STATUS
    ) -> None:
        """Take TWS's status of ``record`` (ids, filled quantity, prices, status)."""
        if status.permId and record.perm_id != status.permId:
            self._reg.learn_perm(record, status.permId)
        changed = False
        if status.filled and status.filled > record.tws_filled:
            record.tws_filled = float(status.filled)
            changed = True
        if status.remaining is not None and status.status:
            record.tws_remaining = float(status.remaining)
        avg = number_or_none(status.avgFillPrice)
        if avg and avg > 0:
            record.tws_avg = avg
        last = number_or_none(status.lastFillPrice)
        if last and last > 0:
            record.tws_last = last
        new = map_tws_status(status.status, record.filled, record.remaining)
        if new is record.status and new.is_done:
            return  # a final status repeated (or known from the executions): nothing new
        revived = record.status is OrderStatus.LOST  # TWS reports a lost order again
        if new is None or (record.status.is_done and not new.is_done and not revived):
            if changed:
                self._pub.publish(record, kind)
            return
        if new is OrderStatus.PENDING_SUBMIT and record.status is not OrderStatus.UNKNOWN:
            if changed:
                self._pub.publish(record, kind)
            return
        if new is not record.status or changed:
            self._pub.set_status(record, new, kind)

    def not_sent(self, record: OrderRecord, reason: str) -> None:
        """The order never left ibconn: TWS never saw it, so placing it again is safe."""
        self._reg.forget(record)
        record.status = OrderStatus.NOT_FOUND
        record.updated_at = datetime.now(UTC)
        record.last_error = OrderError(code=0, text=f"not sent: {reason}")
        ack = record.ack
        if ack is not None and not ack.done():
            error = ConnectionLostError(
                f"order {record.order_ref} was NOT sent ({reason}): it never left ibconn, "
                "so TWS never saw it; placing it again is safe"
            )
            if record.dropped is not None:
                error.__cause__ = record.dropped
            ack.set_exception(error)
        self._pub.publish(record, UpdateKind.ERROR, error=record.last_error)

    def lose(self, record: OrderRecord, error: OrderError) -> None:
        """TWS no longer knows an order it had acknowledged: final, alerted, explained."""
        record.last_error = error
        record.status = OrderStatus.LOST
        record.updated_at = datetime.now(UTC)
        order = record.ib_order
        self._alerts.publish(  # docs/alerts.md: an order lost by TWS
            Severity.ERROR,
            "orders",
            f"order {record.order_ref} ({order.action} {record.quantity:g} {record.symbol} "
            f"{order.orderType}, filled {record.filled:g}) was lost by TWS and is marked "
            f"LOST: {error.text}. Check it in TWS before placing it again",
            code=error.code or None,
            order_ref=record.order_ref,
        )
        _log.warning("order {} lost by TWS: {}", record.order_ref, error.text)
        self._pub.publish(record, UpdateKind.STATUS, error=error)

    def adoptable(self, trade: Trade) -> bool:
        """Whether ``trade`` is a working order of this client id (one to adopt)."""
        order = trade.order
        return (
            order.clientId == self._reg.sync.client_id
            and order.orderId > 0
            and trade.orderStatus.status not in IBOrderStatus.DoneStates
        )

    def adopt(self, trade: Trade, *, announce: bool) -> OrderRecord:
        """Track a working order an earlier run of this client id placed."""
        order = trade.order
        ref = order.orderRef or f"adopted-{order.permId or order.orderId}"
        tag = ref.split("/", 1)[1] if "/" in ref else None
        contract = trade.contract
        resolved = self._contracts.by_con_id(contract.conId) if contract.conId else None
        spec = spec_from_order(order, contract, tag)
        record = OrderRecord(
            ref,
            symbol=trading_symbol(contract),
            con_id=contract.conId,
            contract=contract,
            ib_order=copy.copy(order),
            spec=spec,
            resolved=resolved,
            tag=tag if tag and len(tag) <= 32 else None,
            adopted=True,
        )
        record.sent = True
        self._reg.register(record)
        self._reg.link(record, trade)
        record.status = (
            map_tws_status(trade.orderStatus.status, trade.orderStatus.filled, None)
            or OrderStatus.SUBMITTED
        )
        record.tws_filled = float(trade.orderStatus.filled or 0.0)
        _log.info("adopted order {} id={} from an earlier session", ref, order.orderId)
        self._pub.publish(record, UpdateKind.ADOPTED)
        return record
