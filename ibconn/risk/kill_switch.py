"""The kill switch: cancel every working order ahead of the queue, refuse opening orders.

:meth:`KillSwitch.engage` turns the switch on, sends a cancel for every
working order this connector knows, and TWS's global cancel (with
``risk.kill_switch_global_cancel``), all inside :meth:`Pacer.critical
<ibconn.pacing.Pacer.critical>` so they go out ahead of anything queued; a
``readonly`` connection sends none. If the link is down the cancels cannot go
out (the pacer drops what is queued on link loss), so
:meth:`KillSwitch.resend` sends them again when a session is ready and when a
degraded link comes back (1102), as long as the switch is on. It stays on
until :meth:`KillSwitch.reset`. Refusing orders is the limits' job
(:func:`ibconn.risk.limits.kill_switch_refusal`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from ib_async import Order

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import ConnectionState
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.errors import IBConnError
from ibconn.orders.audit import snapshot_event
from ibconn.orders.events import OrderEvent, OrderEventKind, OrderEvents
from ibconn.orders.models import OrderSnapshot
from ibconn.risk.models import KillSwitchState
from ibconn.risk.ports import Link, OrderBook

__all__ = ["KillSwitch"]

_log = get_logger("risk")


class KillSwitch:
    """The kill switch's state and the cancels it sends (see the module docstring)."""

    def __init__(
        self,
        link: Link,
        orders: OrderBook,
        settings: ConnectorSettings,
        alerts: AlertBus,
        *,
        on_change: Callable[[], None] = lambda: None,
        events: OrderEvents | None = None,
    ) -> None:
        self._link = link
        self._orders = orders
        self._settings = settings
        self._alerts = alerts
        self._on_change = on_change
        self._state = KillSwitchState(engaged=False)
        self._listeners: list[Callable[[KillSwitchState], None]] = []
        self._events = events

    @property
    def state(self) -> KillSwitchState:
        """Where the kill switch stands."""
        return self._state

    def add_listener(self, callback: Callable[[KillSwitchState], None]) -> None:
        """Call ``callback(state)`` whenever the switch is engaged or reset."""
        self._listeners.append(callback)

    async def engage(
        self,
        reason: str,
        *,
        global_cancel: bool | None = None,
        timeout: float | None = None,
    ) -> KillSwitchState:
        """Turn the switch on and cancel every working order (see ``RiskService.kill_switch``)."""
        limits = self._settings.risk
        use_global = limits.kill_switch_global_cancel if global_cancel is None else global_cancel
        was_engaged = self._state.engaged
        if not was_engaged:
            self._state = KillSwitchState(
                engaged=True, reason=reason, since=datetime.now(UTC), global_cancel=use_global
            )
        else:
            self._state = replace(
                self._state, global_cancel=self._state.global_cancel or use_global
            )
        working = self._orders.orders(working_only=True)
        _log.warning("risk: kill switch {}: {}", "engaged" if not was_engaged else "again", reason)
        self._alerts.publish(
            Severity.CRITICAL,
            "risk",
            f"kill switch engaged: {reason}; cancelling {len(working)} working order(s)"
            + (" and sending TWS's global cancel" if use_global else ""),
            coalesce_key=("kill_switch", reason),
            reason=reason,
            orders=len(working),
        )
        self._emit(again=was_engaged, orders=[s.order_ref for s in working])
        if not was_engaged:
            self._notify()
        self._send_cancels(use_global)
        self._on_change()
        state = self._link.state
        if state not in (ConnectionState.CONNECTED, ConnectionState.DEGRADED) or not working:
            return self._state
        limit = timeout if timeout is not None else self._settings.order_ack_timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                for snap in working:
                    if not self._is_done(snap.order_ref):
                        with contextlib.suppress(IBConnError):
                            await self._orders.wait_for_order(snap.order_ref)
        still = tuple(s.order_ref for s in working if not self._is_done(s.order_ref))
        self._state = replace(self._state, still_working=still)
        return self._state

    def reset(self) -> KillSwitchState:
        """Turn the switch off: orders that open positions pass again (limits permitting)."""
        previous = self._state
        if not previous.engaged:
            return previous
        self._state = KillSwitchState(engaged=False)
        self._emit(was=previous.reason)
        _log.warning("risk: kill switch reset (was: {})", previous.reason)
        self._alerts.publish(
            Severity.INFO,
            "risk",
            f"kill switch reset (engaged since {previous.since:%H:%M:%S} UTC for: "
            f"{previous.reason})"
            if previous.since is not None
            else "kill switch reset",
            coalesce_key=("kill_switch_reset",),
        )
        self._notify()
        self._on_change()
        return self._state

    def restore(self, state: KillSwitchState) -> None:
        """Take the state an earlier run left (the journal): an engaged switch stays engaged,
        with its reason and time; its cancels go out when the next session is ready."""
        if not state.engaged or self._state.engaged:
            return
        self._state = KillSwitchState(
            engaged=True,
            reason=state.reason,
            since=state.since,
            global_cancel=state.global_cancel,
            deferred=True,
        )
        self._emit(restored=True)
        self._notify()
        self._on_change()

    def _emit(self, **detail: object) -> None:
        """Tell the audit tap where the switch stands now (engaged or released, and why)."""
        events = self._events
        if events is None or not events.has_sinks:
            return
        state = self._state
        events.emit(
            OrderEvent(
                kind=OrderEventKind.KILL_SWITCH,
                detail={
                    "engaged": state.engaged,
                    "reason": state.reason,
                    "since": state.since.isoformat() if state.since is not None else None,
                    "global_cancel": state.global_cancel,
                    **detail,
                },
            )
        )

    def resend(self) -> None:
        """Send the cancels again if the switch is on (a new session, or the link is back)."""
        if self._state.engaged:
            self._send_cancels(self._state.global_cancel)

    def link_lost(self) -> None:
        """The session ended: the cancels wait for the next one."""
        if self._state.engaged:
            self._state = replace(self._state, deferred=True)

    def _emit_cancel(
        self, kind: OrderEventKind, snap: OrderSnapshot | None, detail: dict[str, object]
    ) -> None:
        events = self._events
        if events is None or not events.has_sinks:
            return
        if snap is None:
            events.emit(OrderEvent(kind=kind, detail={**detail, "by": "kill_switch"}))
            return
        events.emit(snapshot_event(kind, snap, detail))

    def _is_done(self, order_ref: str) -> bool:
        try:
            return self._orders.get_order_status(order_ref).is_done
        except IBConnError:  # forgotten: it was never sent
            return True

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback(self._state)
            except Exception as exc:
                _log.opt(exception=exc).error("kill switch listener raised {!r}", exc)

    def _send_cancels(self, use_global: bool) -> int:
        """Send a cancel for every working order (and the global cancel) ahead of the queue.

        Returns how many messages were handed to the pacer; marks the state
        ``deferred`` when the link is down (they are sent again when it is back).
        A ``readonly`` connector sends nothing: it never changes orders, not even
        to cancel them (``ibconn kill-switch status`` connects read-only and must
        not send TWS's global cancel for a switch it finds engaged in the journal).
        """
        if self._settings.readonly:
            _log.info("risk: kill switch on, no cancels sent: the connection is readonly")
            return 0
        try:
            ib = self._link.ib
        except IBConnError:
            self._state = replace(self._state, deferred=True)
            return 0
        working = [s for s in self._orders.orders(working_only=True) if s.order_id]
        trades = {
            (t.order.clientId, t.order.orderId): t.order for t in ib.openTrades() if t.order.orderId
        }
        session = self._link.session
        client_id = session.client_id if session is not None else self._settings.client_id
        pacer = self._link.pacer
        connected = ib.isConnected() and pacer.installed
        sent = 0
        deferred = not connected
        if connected:
            # The global cancel first (the pacer's URGENT lane: ahead of every queued
            # cancel too), then the per-order cancels (CRITICAL: ahead of every queued
            # order and data request).
            with pacer.critical():
                if use_global:
                    try:
                        ib.reqGlobalCancel()
                        sent += 1
                    except ConnectionError:
                        deferred = True
                    else:
                        self._emit_cancel(OrderEventKind.CANCEL_ALL, None, {"global": True})
                for snap in working:
                    if deferred:
                        break
                    order_id = snap.order_id or 0
                    target = trades.get((client_id, order_id)) or Order(
                        orderId=order_id, clientId=client_id, permId=snap.perm_id or 0
                    )
                    try:
                        ib.cancelOrder(target)
                        sent += 1
                    except ConnectionError:
                        deferred = True
                        break
                    self._emit_cancel(OrderEventKind.CANCEL, snap, {"by": "kill_switch"})
        self._state = replace(
            self._state, cancels_sent=self._state.cancels_sent + sent, deferred=deferred
        )
        if sent:
            _log.warning("risk: kill switch sent {} cancel message(s)", sent)
        return sent
