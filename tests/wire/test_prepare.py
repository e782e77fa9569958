"""Preparing a fresh IB (ibconn/wire/prepare.py): every wire patch, once, in one call."""

from __future__ import annotations

import pytest
from ib_async import IB

from ibconn.wire.prepare import prepare_ib
from ibconn.wire.receive import fast_receive_installed, receiver_of


@pytest.mark.parametrize("fast_receive", [True, False])
def test_prepare_installs_the_sender_the_guard_and_the_safe_close(fast_receive: bool) -> None:
    ib = IB()
    senders: list[IB] = []
    reports: list[tuple[str, str]] = []
    original_disconnect = ib.client.conn.disconnect
    original_closed = ib.wrapper.connectionClosed
    prepare_ib(
        ib,
        install_sender=senders.append,
        report=lambda kind, detail: reports.append((kind, detail)),
        fast_receive=fast_receive,
    )
    assert senders == [ib]
    assert ib.client.conn.disconnect != original_disconnect  # the safe close
    assert ib.wrapper.connectionClosed != original_closed  # failures retrieved on close
    assert fast_receive_installed(ib) is fast_receive
    receiver = receiver_of(ib)
    if receiver is not None:
        receiver.report("frame_size", "too big")  # the receive path reports to the same place
        assert reports == [("frame_size", "too big")]


def test_garbage_found_by_the_inbound_guard_reaches_the_report() -> None:
    ib = IB()
    reports: list[str] = []
    prepare_ib(
        ib,
        install_sender=lambda _ib: None,
        report=lambda kind, _d: reports.append(kind),
        fast_receive=False,
    )
    # an orderStatus with a quantity of inf: dropped before ib_async applies it
    fields = ["3", "7", "Submitted", "inf", "10", "0", "0", "0", "0", "1", "", "0"]
    ib.client.decoder.interpret(fields)
    assert reports == ["impossible_number"]
