"""What the connection package needs from the parts it is given (declared by the consumer).

The supervisor does not know the pacer's class (``ibconn.pacing`` is a sibling
it must not import): it takes any object with the few members below.
:class:`ibconn.pacing.Pacer` is the one :func:`ibconn.assembly.assemble` passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ib_async import IB

__all__ = ["LinkPacer", "SentCallback"]

SentCallback = Callable[[int, "int | None"], None]
"""Called with ``(msg_id, request_id)`` right after a message was written to the socket."""


class LinkPacer(Protocol):
    """The door every outgoing message passes, as the supervisor uses it."""

    @property
    def window(self) -> float:
        """Seconds of the pacing window: the longest a message may wait for a free slot."""
        ...

    def install(self, ib: IB) -> None:
        """Sit in ``ib``'s send path (called once, when the supervisor prepares its ``IB``)."""
        ...

    def link_lost(self, reason: str) -> int:
        """Drop (and report) every queued message: the socket is closing; returns how many."""
        ...

    def on_sent(self, callback: SentCallback) -> Callable[[], None]:
        """Call ``callback`` after each message is written; returns a remover."""
        ...
