"""Preparing a fresh ``ib_async.IB`` for ibconn: every patch of its wire, in one call.

:func:`prepare_ib` is the only place these patches are put in, once per
``IB`` (they last for the ``IB``'s lifetime, across reconnects):

1. ``connectionClosed`` marks the errors of the request futures ib_async
   fails on a socket close as retrieved (:mod:`ibconn.wire.closing`);
2. the socket closes even after TWS reset it (:mod:`ibconn.wire.closing`);
3. the send path: ``install_sender(ib)`` (the pacer, injected by the
   composition root: ``wire`` does not know it);
4. the inbound guard drops impossible order numbers and reports garbage
   (:mod:`ibconn.wire.inbound`);
5. with ``fast_receive``, ibconn's receive path replaces ib_async's
   (:mod:`ibconn.wire.receive`; it keeps ib_async's own path, and logs why,
   when ib_async's client is not the one it was built for);
6. TWS's orderStatus is handled by :func:`ibconn.wire.ib_compat.order_status`, ib_async's
   own bookkeeping without its eager log formatting (for the ib_async releases it
   replicates; otherwise ib_async's handler stays).
"""

from __future__ import annotations

from collections.abc import Callable

from ib_async import IB

from ibconn.wire.closing import install_safe_close, retrieve_failures_on_close
from ibconn.wire.ib_compat import install_order_status
from ibconn.wire.inbound import InboundReport, install_inbound_guard
from ibconn.wire.receive import install_fast_receive

__all__ = ["prepare_ib"]


def prepare_ib(
    ib: IB,
    *,
    install_sender: Callable[[IB], None],
    report: InboundReport,
    fast_receive: bool,
) -> None:
    """Patch ``ib``'s wire for ibconn (see the module docstring); call once per ``IB``.

    ``report(kind, detail)`` receives every piece of garbage the gateway sends.
    """
    retrieve_failures_on_close(ib)
    install_safe_close(ib)
    install_sender(ib)  # replaces ib.client.sendMsg; ib_async's throttle off
    install_inbound_guard(ib, report)
    install_order_status(ib)
    if fast_receive:
        receiver = install_fast_receive(ib)
        if receiver is not None:  # None: ib_async's own path stays (logged)
            receiver.report = report
