"""The pacer without a socket: priorities, withdrawals, drops, statistics.

A real ``ib_async.IB`` builds the messages (its own ``placeOrder``,
``cancelOrder``, ``reqCurrentTime`` ...); only its transport is a fake that
records the bytes written, so the order on the "wire" is exact.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import until
from ib_async import IB, LimitOrder, Stock
from ib_async.client import Client

from ibconn.config.settings import ConnectorSettings
from ibconn.core.alerts import Alert, AlertBus
from ibconn.core.codes import Severity
from ibconn.errors import MessageNotSentError
from ibconn.pacing import (
    DroppedMessage,
    Pacer,
    Priority,
    priority_of,
)

pytestmark = pytest.mark.timeout(30)

AAPL = Stock("AAPL", "SMART", "USD")


class FakeTransport:
    """Collects what the pacer writes; splits it back into messages."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def messages(self) -> list[list[str]]:
        out, data = [], self.data
        while data:
            (size,) = struct.unpack(">I", data[:4])
            out.append(data[4 : 4 + size].decode().split("\0")[:-1])
            data = data[4 + size :]
        return out

    def ids(self) -> list[int]:
        return [int(fields[0]) for fields in self.messages()]


def connect_fake(ib: IB) -> FakeTransport:
    """Make ``ib`` believe it is connected and ready at server version 178."""
    client = ib.client
    transport = FakeTransport()
    client.conn.transport = transport
    client.connState = Client.CONNECTED
    client._serverVersion = 178
    client._hasReqId = True
    client._reqIdSeq = max(client._reqIdSeq, 100)
    client._apiReady = True
    return transport


def lose_link(ib: IB) -> None:
    """What asyncio does when the socket dies: ``connection_lost`` on the protocol."""
    ib.client.conn.connection_lost(None)


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]]]:
    made: list[IB] = []

    def build(
        burst: int | None = None, order_headroom: int | None = None, **overrides: Any
    ) -> tuple[IB, Pacer, FakeTransport, AlertBus]:
        alerts = AlertBus()
        pacer = Pacer(
            ConnectorSettings(**overrides), alerts, burst=burst, order_headroom=order_headroom
        )
        ib = IB()
        pacer.install(ib)
        made.append(ib)
        return ib, pacer, connect_fake(ib), alerts

    yield build
    for ib in made:
        ib.client.conn.transport = None
        ib.client.connState = Client.DISCONNECTED


def details(ib: IB, n: int) -> None:
    for _ in range(n):
        ib.client.reqContractDetails(ib.client.getReqId(), AAPL)


# -- installation --------------------------------------------------------------------


async def test_install_replaces_ib_async_sender_and_switches_its_throttle_off(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ib, pacer, transport, _ = make()
    assert ib.client.sendMsg == pacer.submit
    assert ib.client.MaxRequests == 0

    def forbidden(self: Client, msg: str) -> None:
        raise AssertionError("ib_async's own throttled sendMsg ran")

    monkeypatch.setattr(Client, "sendMsg", forbidden)
    ib.client.reqCurrentTime()
    assert transport.ids() == [49]
    assert pacer.statistics().sent_total == 1
    pacer.uninstall()
    assert "sendMsg" not in vars(ib.client) and "MaxRequests" not in vars(ib.client)
    with pytest.raises(AssertionError, match="throttled"):
        ib.client.reqCurrentTime()


def test_priorities_by_message_id() -> None:
    assert [priority_of(i) for i in (49, 58, 71)] == [Priority.URGENT] * 3
    assert priority_of(4) is Priority.CRITICAL
    assert priority_of(3) is Priority.ORDER
    assert priority_of(20) is Priority.HISTORICAL
    assert [priority_of(i) for i in (1, 2, 9, 25, 61)] == [Priority.DATA] * 5


async def test_empty_queue_and_room_send_synchronously(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, transport, _ = make()
    details(ib, 3)
    assert transport.ids() == [9, 9, 9]  # written inside send(): no task, no timer
    assert pacer.queued == 0


# -- priorities ------------------------------------------------------------------------


async def test_critical_skips_the_smoother_so_it_leaves_at_once_behind_a_backlog(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, transport, _ = make(burst=1, order_headroom=0)  # orders wait for the smoother too
    details(ib, 6)  # the first leaves at once, five wait for the smoother
    ib.placeOrder(AAPL, LimitOrder("BUY", 1, 100.0))
    assert transport.ids() == [9] and pacer.queued == 6
    ib.client.cancelOrder(4242)  # the window has room: out now, ahead of all six
    assert transport.ids() == [9, 4]
    await until(lambda: pacer.queued == 0)
    assert transport.ids() == [9, 4, 3, 9, 9, 9, 9, 9]


async def test_an_order_skips_the_smoother_while_the_window_is_less_than_half_used(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    # limit 10: the smoother lets 1 message through, then one per 0.1 s; orders skip it
    # while fewer than 5 messages are in the window
    ib, pacer, transport, _ = make(burst=1, max_requests_per_second=10, pacing_window_margin=0)
    details(ib, 3)  # one leaves, two wait for the smoother
    assert transport.ids() == [9] and pacer.queued == 2
    for i in range(4):
        ib.placeOrder(AAPL, LimitOrder("BUY", 1, 100.0 + i))
    # the window held 1, 2, 3, 4 messages: each order left at once, ahead of the data
    assert transport.ids() == [9, 3, 3, 3, 3]
    ib.placeOrder(AAPL, LimitOrder("BUY", 1, 105.0))  # 5 in the window: smoothed
    assert transport.ids() == [9, 3, 3, 3, 3] and pacer.statistics().queued_orders == 1
    await until(lambda: pacer.queued == 0)
    assert transport.ids() == [9, 3, 3, 3, 3, 3, 9, 9]  # orders before data, as always
    assert pacer.statistics().sent_last_second <= 10


async def test_urgent_then_critical_then_orders_then_data_fifo_within_each(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, transport, _ = make(burst=1, max_requests_per_second=4, pacing_window_margin=0)
    with pacer.critical():
        details(ib, 4)  # two leave at once (half the window), two wait for the smoother
    details(ib, 2)
    ib.placeOrder(AAPL, LimitOrder("BUY", 1, 100.0))
    ib.client.cancelOrder(4242)
    with pacer.critical():  # the kill switch: even a data request goes first
        ib.client.reqGlobalCancel()
        ib.client.reqPositions()
    ib.client.reqCurrentTime()
    stats = pacer.statistics()
    assert (stats.queued_critical, stats.queued_orders, stats.queued_data) == (4, 0, 2)
    assert stats.dropped_total == 1  # reqGlobalCancel withdrew the queued placeOrder
    await until(lambda: pacer.queued == 0)  # about 2 s: 4 messages per second
    # the global cancel and the heartbeat (URGENT) went out at once, ahead of everything
    assert transport.ids() == [9, 9, 58, 49, 9, 9, 4, 61, 9, 9]


async def test_a_cancel_withdraws_the_queued_place_order_of_its_id(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, transport, _ = make(burst=1, order_headroom=0)  # orders wait for the smoother too
    dropped = pacer.dropped()
    details(ib, 1)
    keep = ib.placeOrder(AAPL, LimitOrder("BUY", 1, 100.0))
    cancel_me = ib.placeOrder(AAPL, LimitOrder("BUY", 2, 101.0))
    ib.client.cancelOrder(cancel_me.order.orderId)
    gone = dropped.get_nowait()
    assert gone is not None
    assert (gone.msg_id, gone.request_id, gone.priority) == (
        3,
        cancel_me.order.orderId,
        Priority.ORDER,
    )
    assert "cancelOrder" in gone.reason
    await until(lambda: pacer.queued == 0)
    sent = transport.messages()
    assert [m[0] for m in sent] == ["9", "4", "3"]
    assert sent[2][1] == str(keep.order.orderId)  # the other order still goes


async def test_link_loss_drops_every_queued_message_and_none_reaches_a_new_socket(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, old, _ = make(burst=1, order_headroom=0)  # orders wait for the smoother too
    dropped = pacer.dropped()
    notified: list[DroppedMessage] = []
    pacer.on_dropped(notified.append)
    details(ib, 3)
    order = LimitOrder("BUY", 1, 100.0)
    order.orderRef = "ref-1"
    trade = ib.placeOrder(AAPL, order)
    assert pacer.queued == 3 and old.ids() == [9]
    assert pacer.epoch == 1
    lose_link(ib)
    assert pacer.queued == 0
    first = dropped.get_nowait()
    assert first is not None and first.is_order and first.order_ref == "ref-1"
    assert first.request_id == trade.order.orderId and first.epoch == 1
    error = first.error
    assert isinstance(error, MessageNotSentError) and error.retriable
    assert "NOT sent" in str(error) and "placing it again is safe" in str(error)
    assert [d.msg_id for d in notified] == [3, 9, 9]
    assert all("link to TWS was lost" in d.reason for d in notified)
    new = connect_fake(ib)  # the supervisor reconnects
    ib.client.reqCurrentTime()
    await asyncio.sleep(0.1)  # give a stray timer the chance to misbehave
    assert new.ids() == [49] and old.ids() == [9]
    assert pacer.epoch == 2
    assert pacer.statistics().dropped_total == 3


async def test_link_lost_called_before_the_close_refuses_sends_on_the_dying_socket(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, transport, _ = make(burst=1)
    details(ib, 2)
    assert pacer.link_lost("heartbeat unanswered") == 1
    dropped = pacer.dropped()
    ib.client.reqCurrentTime()  # the socket is still open but condemned
    assert transport.ids() == [9]
    late = dropped.get_nowait()
    assert late is not None and late.msg_id == 49 and "no live socket" in late.reason


class HalfClosingTransport(FakeTransport):
    """asyncio's socket transport: ``write`` raises after ``write_eof``; closing once closed."""

    def __init__(self) -> None:
        super().__init__()
        self.eof = False
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        super().write(data)

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_a_socket_closed_under_a_backlog_takes_no_write_and_the_backlog_is_dropped(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    # the fuzz finding: the receive path closed the socket (a frame over the size limit)
    # while messages waited for the window; the pacer's timer then wrote to the closed
    # transport and asyncio's RuntimeError reached the event loop's exception handler
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        ib, pacer, _, _ = make(burst=1)
        transport = HalfClosingTransport()
        ib.client.conn.transport = transport
        notified: list[DroppedMessage] = []
        pacer.on_dropped(notified.append)
        details(ib, 3)
        assert pacer.queued == 2 and transport.ids() == [9]
        ib.client.conn.disconnect()  # half-close, then close; connection_lost comes later
        ib.client.reqCurrentTime()  # a send on the closed socket: dropped, never raised
        await until(lambda: len(notified) == 3, timeout=5)
        await asyncio.sleep(0.05)  # a stray timer would fire now
        assert errors == []
        assert transport.ids() == [9] and pacer.queued == 0
        assert sorted(d.msg_id for d in notified) == [9, 9, 49]
    finally:
        loop.set_exception_handler(None)


async def test_on_sent_tells_an_order_service_which_order_left_the_door(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, _, _ = make()
    sent: list[tuple[int, int | None]] = []
    remove = pacer.on_sent(lambda msg_id, req_id: sent.append((msg_id, req_id)))
    trade = ib.placeOrder(AAPL, LimitOrder("BUY", 1, 100.0))
    ib.client.cancelOrder(trade.order.orderId)
    ib.client.reqHistoricalData(7, AAPL, "", "60 S", "1 day", "TRADES", False, 1, False, [])
    remove()
    ib.client.reqCurrentTime()
    assert sent == [(3, trade.order.orderId), (4, trade.order.orderId), (20, 7)]


async def test_statistics_and_backlog_alert(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, _, alerts = make(burst=1, max_requests_per_second=20, pacing_backlog_alert_after=0.2)
    stream = alerts.subscribe()
    details(ib, 10)
    stats = pacer.statistics()
    assert (stats.queued_data, stats.queued, stats.sent_last_second) == (9, 9, 1)
    assert (stats.limit, stats.window) == (20, pytest.approx(1.05))
    alert = await asyncio.wait_for(anext(aiter(stream)), 5)
    assert isinstance(alert, Alert)
    assert alert.category == "pacing" and alert.severity is Severity.WARNING
    assert "backed up" in alert.message and alert.context["queued_data"] > 0
    await until(lambda: pacer.queued == 0)
    drained = await asyncio.wait_for(anext(aiter(stream)), 5)
    assert drained.severity is Severity.INFO and "drained" in drained.message
    stats = pacer.statistics()
    assert stats.sent_total == 10 and stats.sent_last_second <= 20
    assert stats.throttled_seconds == pytest.approx(9 * 1.05 / 20, abs=0.05)
    assert stats.oldest_wait == 0.0


async def test_the_heartbeat_and_the_global_cancel_leave_ahead_of_a_book_of_queued_cancels(
    make: Callable[..., tuple[IB, Pacer, FakeTransport, AlertBus]],
) -> None:
    ib, pacer, transport, _ = make(max_requests_per_second=10, pacing_window_margin=0)
    for order_id in range(1000, 1030):  # 30 cancels at 10 per second: about 3 s of queue
        ib.client.cancelOrder(order_id)
    assert pacer.statistics().queued_critical > 20
    ib.client.reqCurrentTime()  # the heartbeat
    ib.client.reqGlobalCancel()
    await until(lambda: 49 in transport.ids() and 58 in transport.ids(), timeout=2)
    ids = transport.ids()
    assert pacer.statistics().queued_critical > 15  # both left long before the cancels did
    assert ids.index(49) < 10 and ids.index(58) < 10
    await until(lambda: pacer.queued == 0, timeout=10)
    assert transport.ids().count(4) == 30
