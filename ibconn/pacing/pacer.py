"""The pacer: the one door every outgoing API message passes, ib_async's own included.

Where it sits
-------------
ib_async serialises every request in ``Client.send`` and hands the text to
``self.sendMsg(msg)``; that method holds ib_async's own throttle (45
messages per second in a FIFO that ``Client.reset()`` empties on every
disconnect). :meth:`Pacer.install` assigns :meth:`Pacer.submit` to the
*instance* attribute ``ib.client.sendMsg``, so ``send`` calls the pacer
instead and ib_async's throttle never runs (``client.MaxRequests`` is also
set to 0 on the instance, for anyone who reads it). The start-up sync,
resubscriptions, heartbeats and user calls through ``connector.ib`` all
pass here. Only the handshake bytes (``API\\0`` and the version range) go to
the socket directly; they are not API messages and TWS does not count them.

What it guarantees
------------------
* **No window of ``1 + pacing_window_margin`` seconds carries more than
  ``max_requests_per_second`` messages** on the wire: an exact sliding-window
  log (:class:`~ibconn.pacing.windows.WindowLog`) is asked before every write
  and records every write. The margin covers the difference between the
  moment ibconn writes and the moment TWS stamps a message (measured against
  the simulator: see ``docs/pacing.md``).
* A smoother (:class:`~ibconn.pacing.windows.Spacer`, a leaky bucket with a
  burst of ``limit // 5``) spaces a backlog evenly instead of letting it leave
  in one-second clumps, so a cancel that arrives behind a backlog waits about
  ``1 / limit`` seconds, not up to a whole window. A leaky bucket alone admits
  its burst plus its rate in one window; the window log is what keeps the
  two together under the limit.
* Priorities: URGENT (the heartbeat reqCurrentTime, startApi, reqGlobalCancel)
  before CRITICAL (cancelOrder and everything inside :meth:`Pacer.critical`)
  before ORDER (placeOrder) before DATA before HISTORICAL; FIFO within one
  priority. The heartbeat thus waits for at most the next free slot of the
  window, never behind a book of queued cancels: it measures the link, not the
  queue. Urgent messages skip the smoother (never the window log); critical
  ones skip it while the window is less than half used, so a lone cancel leaves
  at once and a book of cancels is spaced evenly. A cancelOrder withdraws the queued
  placeOrders of its order id, and reqGlobalCancel every queued placeOrder,
  so an order can never be placed after the cancel that was meant to stop
  it; cancelHistoricalData withdraws its queued reqHistoricalData.
* Bursts wait; nothing is refused. When the queue is empty and there is
  room, a message is written synchronously inside ``send``: no task, no
  timer, no added latency. A backlog is drained by one ``loop.call_at``
  timer, never by a task per message.
* Historical requests also follow IB's rules (:mod:`ibconn.pacing.historical`)
  in their own queue, so a waiting historical request never holds up
  anything else.
* A message queued on one socket is never written to a later one. On link
  loss (the supervisor calls :meth:`Pacer.link_lost` before it closes the
  socket; the socket's own ``disconnected`` event does too) every queued
  message is dropped and reported as :class:`DroppedMessage`: through
  :meth:`Pacer.dropped` (a stream) and :meth:`Pacer.on_dropped` (callbacks).
  It never left the door, so placing an order again is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ibconn.config.settings import ConnectorSettings
from ibconn.core.alerts import AlertBus
from ibconn.core.logs import get_logger
from ibconn.core.streams import Subscription
from ibconn.pacing.historical import HistoricalRequest, HistoricalRules, parse_historical_request
from ibconn.pacing.lanes import Lanes, Queued
from ibconn.pacing.messages import DroppedMessage, Priority, priority_of, request_id_of
from ibconn.pacing.reports import Backlog, DroppedHook, DropReports, PacerStatistics, PacingCodes
from ibconn.pacing.windows import Spacer, WindowLog
from ibconn.wire.outgoing import (
    CANCEL_HISTORICAL_DATA,
    CANCEL_ORDER,
    PLACE_ORDER,
    REQ_GLOBAL_CANCEL,
    REQ_HISTORICAL_DATA,
)

if TYPE_CHECKING:
    from ib_async import IB

# DroppedHook and PacerStatistics live in ibconn.pacing.reports; they stay importable
# from here, where ibconn 0.1 defined them.
__all__ = ["DroppedHook", "Pacer", "PacerStatistics", "SentHook"]

_log = get_logger("pacing")
_ib_log = logging.getLogger("ib_async.client")
_LEN = struct.Struct(">I")

SentHook = Callable[[int, "int | None"], None]
"""Called with ``(msg_id, request_id)`` right after a message was written to the socket."""

_critical_depth: ContextVar[int] = ContextVar("ibconn_pacer_critical", default=0)


class Pacer:
    """The one door between ib_async and the socket (see the module docstring).

    The composition root (``ibconn.assembly``) creates it and hands it to the
    supervisor, which installs it on its ``IB`` (``ibconn.wire.prepare``); read
    it as ``connector.pacer``. ``burst`` (default ``limit // 5``) is how many
    messages may leave back to back before the smoother spaces them;
    ``order_headroom`` (default ``limit // 2``) is how many messages the window
    may hold for a placeOrder to skip the smoother (0: never).
    """

    def __init__(
        self,
        settings: ConnectorSettings | None = None,
        alerts: AlertBus | None = None,
        *,
        burst: int | None = None,
        order_headroom: int | None = None,
    ) -> None:
        settings = settings if settings is not None else ConnectorSettings()
        self._limit = settings.max_requests_per_second
        self._window = 1.0 + settings.pacing_window_margin
        self._wire = WindowLog(self._limit, self._window)
        self._burst = burst if burst is not None else max(1, self._limit // 5)
        self._spacer = Spacer(self._limit / self._window, self._burst)
        # An order is not a backlog: it skips the smoother while the window is less
        # than half used (it is still counted, and the window log still applies).
        self._order_headroom = (
            order_headroom if order_headroom is not None else max(1, self._limit // 2)
        )
        self._critical_headroom = max(1, self._limit // 2)
        self._rules = HistoricalRules(
            identical_window=settings.historical_identical_window,
            burst_window=settings.historical_burst_window,
            window=settings.historical_window,
            max_bar_seconds=settings.historical_rules_max_bar_seconds,
            backoff=settings.historical_pacing_backoff,
        )
        alerts = alerts if alerts is not None else AlertBus()
        self._lanes = Lanes()
        self._ib: IB | None = None
        self._client: Any = None
        self._transport: object | None = None
        self._lost_transport: object | None = None
        self._epoch = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._draining = False
        self._backlog = Backlog(
            alerts,
            alert_after=settings.pacing_backlog_alert_after,
            limit=self._limit,
            snapshot=self.statistics,
        )
        self._codes = PacingCodes(alerts, self._rules, self._now)
        self._drops = DropReports()
        self._sent_total = 0
        self._sent_hooks: list[SentHook] = []

    # -- installation ------------------------------------------------------------

    def install(self, ib: IB) -> None:
        """Become ``ib``'s only way to the socket (once; idempotent for the same ``ib``).

        Replaces the instance attribute ``ib.client.sendMsg`` (ib_async's
        throttled sender) with :meth:`submit`, sets ``ib.client.MaxRequests``
        to 0, and listens to the socket's ``disconnected`` event and to
        ``ib.errorEvent`` (100 and 162 pacing).
        """
        if self._ib is ib:
            return
        if self._ib is not None:
            raise RuntimeError("this Pacer is already installed on another IB")
        client = ib.client
        client.MaxRequests = 0  # ib_async's throttle off (its sendMsg is replaced anyway)
        client.sendMsg = self.submit  # type: ignore[method-assign]  # instance attribute
        client.conn.disconnected += self._on_socket_closed
        ib.errorEvent += self._codes.on_error
        self._ib = ib
        self._client = client
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    def uninstall(self) -> None:
        """Give ib_async its own sender back; queued messages are dropped (reported)."""
        ib, client = self._ib, self._client
        if ib is None:
            return
        self._drop_all("the pacer was uninstalled")
        self._cancel_timer()
        for name in ("sendMsg", "MaxRequests"):
            with contextlib.suppress(AttributeError):
                delattr(client, name)
        client.conn.disconnected -= self._on_socket_closed
        ib.errorEvent -= self._codes.on_error
        self._ib = None
        self._client = None
        self._transport = None

    @property
    def installed(self) -> bool:
        """Whether the pacer sits in an ``IB``'s send path."""
        return self._ib is not None

    # -- the door ----------------------------------------------------------------

    def submit(self, msg: str) -> None:
        """Send ``msg`` (ib_async's message text) now if allowed, else queue it.

        This is ``ib.client.sendMsg`` once installed: synchronous, never raises
        for pacing, never blocks.
        """
        if not msg:
            return
        client = self._client
        if client is None:
            raise RuntimeError("Pacer.submit called before Pacer.install(ib)")
        loop = self._get_loop()
        now = loop.time()
        head, _, _ = msg.partition("\0")
        try:
            msg_id = int(head)
        except ValueError:
            msg_id = -1
        priority = priority_of(msg_id)
        if _critical_depth.get():
            priority = min(priority, Priority.CRITICAL)
        historical: HistoricalRequest | None = None
        if msg_id == REQ_HISTORICAL_DATA:
            historical = parse_historical_request(msg.split("\0"))
            request_id = historical.req_id if historical is not None else None
        else:
            request_id = request_id_of(msg_id, msg.split("\0", 3))
        transport = client.conn.transport
        if transport is not self._transport:
            self._new_link(transport, now)
        item = Queued(msg, msg_id, request_id, priority, self._epoch, now, historical)
        if transport is None or transport is self._lost_transport or _closing(transport):
            # closing: ib_async's disconnect (or the receive path refusing a frame) closed
            # it, connection_lost comes later; asyncio refuses a write after write_eof()
            self._drops.report(item, "there is no live socket to TWS", now)
            return
        if msg_id == CANCEL_ORDER:
            self._withdraw(
                lambda q: q.msg_id == PLACE_ORDER and q.request_id == request_id,
                f"cancelOrder {request_id} arrived while it still waited in the queue",
                now,
            )
        elif msg_id == REQ_GLOBAL_CANCEL:
            self._withdraw(
                lambda q: q.msg_id == PLACE_ORDER,
                "reqGlobalCancel arrived while it still waited in the queue",
                now,
            )
        elif msg_id == CANCEL_HISTORICAL_DATA:
            self._withdraw(
                lambda q: q.msg_id == REQ_HISTORICAL_DATA and q.request_id == request_id,
                f"cancelHistoricalData {request_id} arrived while it still waited in the queue",
                now,
            )
        if self._may_send_now(item, now):
            self._write(item, now)
            return
        lanes = self._lanes
        lanes.append(item)
        if len(lanes) == 1:
            self._backlog_begins(now)
        self._drain()

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Send every message submitted inside this block as CRITICAL (the kill switch).

        ``with connector.pacer.critical(): ib.reqGlobalCancel(); ib.placeOrder(...)``:
        the block's messages go ahead of everything queued (still within the
        rate limit). Works across ``await`` in the same task.
        """
        token = _critical_depth.set(_critical_depth.get() + 1)
        try:
            yield
        finally:
            _critical_depth.reset(token)

    def link_lost(self, reason: str) -> int:
        """The link to TWS is gone (or about to be closed): drop and report every queued message.

        Returns how many were dropped. Nothing queued so far is ever written
        to this socket or a later one.
        """
        dropped = self._drop_all(f"the link to TWS was lost ({reason})")
        self._cancel_timer()
        if self._transport is not None:
            self._lost_transport = self._transport
        self._transport = None
        return dropped

    # -- observers ---------------------------------------------------------------

    def dropped(self, capacity: int | None = None) -> Subscription[DroppedMessage]:
        """A stream of every message dropped unsent from now on (never drops silently)."""
        return self._drops.subscribe(capacity)

    def on_sent(self, callback: SentHook) -> Callable[[], None]:
        """Call ``callback(msg_id, request_id)`` after each message is written; returns a remover.

        An order service learns here that a placeOrder left the door.
        Exceptions in the callback are logged and ignored.
        """
        self._sent_hooks.append(callback)
        return lambda: self._remove_sent_hook(callback)

    def on_dropped(self, callback: DroppedHook) -> Callable[[], None]:
        """Call ``callback(dropped)`` for each message dropped unsent; returns a remover."""
        return self._drops.add_hook(callback)

    def statistics(self) -> PacerStatistics:
        """Queue depth per priority, recent rate, throttled time and historical counters."""
        now = self._now()
        lanes = self._lanes
        oldest = lanes.oldest()
        return PacerStatistics(
            queued_urgent=lanes.depth(Priority.URGENT),
            queued_critical=lanes.depth(Priority.CRITICAL),
            queued_orders=lanes.depth(Priority.ORDER),
            queued_data=lanes.depth(Priority.DATA),
            queued_historical=lanes.depth(Priority.HISTORICAL),
            sent_last_second=self._wire.count_since(now - 1.0),
            sent_total=self._sent_total,
            dropped_total=self._drops.total,
            throttled_seconds=self._backlog.throttled(now),
            oldest_wait=now - oldest if oldest is not None else 0.0,
            historical_in_window=self._rules.in_window(now),
            historical_paused_for=self._rules.paused_for(now),
            rate_errors=self._codes.rate_errors,
            pacing_violations=self._codes.violations,
            limit=self._limit,
            window=self._window,
        )

    @property
    def limit(self) -> int:
        """Messages allowed per window (``max_requests_per_second``)."""
        return self._limit

    @property
    def window(self) -> float:
        """The window in seconds: ``1 + pacing_window_margin``."""
        return self._window

    @property
    def epoch(self) -> int:
        """The link number: 1 for the first socket, +1 for every new one."""
        return self._epoch

    @property
    def queued(self) -> int:
        """Messages waiting in every queue."""
        return len(self._lanes)

    # -- internals -----------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _now(self) -> float:
        loop = self._loop
        return loop.time() if loop is not None and not loop.is_closed() else time.monotonic()

    def _new_link(self, transport: object | None, now: float) -> None:
        if self._lanes:
            self._drop_all(
                "the socket to TWS closed"
                if transport is None
                else "a new connection replaced the one it was queued for"
            )
        self._cancel_timer()
        self._transport = transport
        if transport is not None and transport is not self._lost_transport:
            self._epoch += 1
            self._lost_transport = None

    def _link_alive(self) -> bool:
        client = self._client
        transport = self._transport
        return (
            client is not None
            and transport is not None
            and client.conn.transport is transport
            and not _closing(transport)
        )

    def _may_send_now(self, item: Queued, now: float) -> bool:
        if self._lanes and self._lanes.any_up_to(item.priority):
            return False
        if not self._wire.has_room(now):
            return False
        if not self._skips_smoother(item, now) and self._spacer.next_free(now) > now:
            return False
        return item.historical is None or self._rules.ready_at(item.historical, now) <= now

    def _skips_smoother(self, item: Queued, now: float) -> bool:
        """URGENT always; CRITICAL while the window is less than half used; ORDER while the
        window holds fewer than ``order_headroom``.

        A lone cancel behind a data backlog still leaves at once, but a book of
        cancels is spaced like any backlog instead of leaving in window-sized
        clumps (which TWS, stamping on arrival, could count as a burst over 50).
        """
        priority = item.priority
        if priority is Priority.URGENT:
            return True
        if priority is Priority.CRITICAL:
            return self._wire.count(now) < self._critical_headroom
        return priority is Priority.ORDER and self._wire.count(now) < self._order_headroom

    def _drain(self) -> None:
        """Send what may be sent now; set one timer for when the next may be."""
        if self._draining:
            return  # a hook sent from inside a drain: the running loop picks it up
        self._draining = True
        try:
            loop = self._get_loop()
            lanes = self._lanes
            if lanes and not self._link_alive():
                self._drop_all("the socket to TWS closed")
                return
            while lanes:
                now = loop.time()
                item, ready = lanes.pick(now, self._rules)
                if item is None:
                    self._schedule(ready)
                    return
                free = self._wire.next_free(now)
                if not self._skips_smoother(item, now):
                    free = max(free, self._spacer.next_free(now))
                if free > now:
                    self._schedule(free)
                    return
                lanes.remove(item)
                if item.epoch != self._epoch:  # never cross sockets (defensive)
                    self._drops.report(item, "it was queued for an earlier connection", now)
                else:
                    self._write(item, now)
                if not lanes:
                    self._backlog_ends(loop.time())
        finally:
            self._draining = False

    def _on_timer(self) -> None:
        self._timer = None
        self._drain()

    def _schedule(self, when: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timer = self._get_loop().call_at(when, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _write(self, item: Queued, now: float) -> None:
        payload = item.msg.encode()
        self._client.conn.sendMsg(_LEN.pack(len(payload)) + payload)
        self._wire.record(now)
        self._spacer.record(now)
        if item.historical is not None:
            self._rules.record(item.historical, now)
        self._sent_total += 1
        if _ib_log.isEnabledFor(logging.DEBUG):
            _ib_log.debug(">>> %s", item.msg[:-1].replace("\0", ","))
        for hook in list(self._sent_hooks):
            try:
                hook(item.msg_id, item.request_id)
            except Exception as exc:
                _log.opt(exception=exc).error("pacer on_sent hook {!r} raised {!r}", hook, exc)

    def _withdraw(self, match: Callable[[Queued], bool], reason: str, now: float) -> None:
        for item in self._lanes.withdraw(match):
            self._drops.report(item, reason, now)
        if self._backlog.since is not None and not self._lanes:
            self._backlog_ends(now)

    def _drop_all(self, reason: str) -> int:
        lanes = self._lanes
        if not lanes:
            return 0
        now = self._now()
        counts = lanes.depths()
        items = lanes.take_all()
        self._cancel_timer()
        self._backlog_ends(now)
        _log.warning("dropped {} queued message(s) unsent {}: {}", len(items), counts, reason)
        for item in items:
            self._drops.report(item, reason, now)
        return len(items)

    def _backlog_begins(self, now: float) -> None:
        self._backlog.begins(now, self._get_loop())
        if self._client is not None:
            self._client.throttleStart.emit()

    def _backlog_ends(self, now: float) -> None:
        if self._backlog.ends(now) and self._client is not None:
            self._client.throttleEnd.emit()

    def _on_socket_closed(self, message: str) -> None:
        self.link_lost(f"socket closed: {message}" if message else "socket closed")

    def _remove_sent_hook(self, callback: SentHook) -> None:
        with contextlib.suppress(ValueError):
            self._sent_hooks.remove(callback)

    def __repr__(self) -> str:
        return (
            f"<Pacer {self._limit}/{self._window:g}s queued={len(self._lanes)} "
            f"sent={self._sent_total} dropped={self._drops.total} epoch={self._epoch}>"
        )


def _closing(transport: object) -> bool:
    """Whether ``transport`` was closed (``connection_lost`` may still be to come): no write."""
    is_closing = getattr(transport, "is_closing", None)
    return bool(is_closing()) if callable(is_closing) else False
