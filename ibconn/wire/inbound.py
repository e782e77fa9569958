"""The guard on what the gateway sends: impossible numbers, malformed messages, huge frames.

A gateway (or anything that answers on its port) can send garbage. Three
checks keep it from corrupting what ibconn knows, each reporting through one
callback (the supervisor turns every report into a coalesced alert):

* **numbers of order messages**: an orderStatus, execDetails or
  commissionReport whose quantities or prices are not finite (``inf``,
  ``nan``), or whose quantities are negative (or, for an execution, not
  positive), is dropped before ``ib_async`` applies it. Known order state
  never changes because of such a message. The check wraps only the
  decoder's handlers of those three message ids, so other messages pay
  nothing;
* **malformed messages**: ``ib_async``'s decoder logs and skips a message it
  cannot decode; the guard also reports it (``malformed``);
* **frame size**: a length prefix above :data:`MAX_FRAME_BYTES` is refused
  by ibconn's receive path (:mod:`ibconn.wire.receive`), which drops the
  connection instead of buffering towards the announced size (``frame_size``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Final

from ibconn.core.logs import get_logger

__all__ = [
    "MAX_FRAME_BYTES",
    "InboundReport",
    "install_inbound_guard",
    "order_message_problem",
]

MAX_FRAME_BYTES: Final = 0xFFFFFF
"""The largest message accepted from the gateway (16 MiB - 1, the TWS API's own limit)."""

InboundReport = Callable[[str, str], None]
"""``report(kind, detail)``: kind is ``impossible_number``, ``malformed`` or ``frame_size``."""

_log = get_logger("connection")
_ATTR = "_ibconn_inbound_guard"

ORDER_STATUS, EXEC_DETAILS, COMMISSION_REPORT = 3, 11, 59

# (field index, name, rule): "qty" finite and >= 0, "shares" finite and > 0, "price" finite.
_RULES: dict[int, tuple[str, tuple[tuple[int, str, str], ...]]] = {
    ORDER_STATUS: (
        "orderStatus",
        (
            (3, "filled", "qty"),
            (4, "remaining", "qty"),
            (5, "avgFillPrice", "price"),
            (8, "lastFillPrice", "price"),
            (11, "mktCapPrice", "price"),
        ),
    ),
    EXEC_DETAILS: (
        "execDetails",
        (
            (19, "shares", "shares"),
            (20, "price", "price"),
            (24, "cumQty", "qty"),
            (25, "avgPrice", "price"),
        ),
    ),
    COMMISSION_REPORT: (
        "commissionReport",
        ((3, "commission", "price"), (5, "realizedPNL", "price")),
    ),
}


def order_message_problem(fields: list[str]) -> str | None:
    """What is impossible in an order message's numbers, or ``None``.

    Fields that are not numbers at all are left to the decoder (it refuses
    them as malformed); only numbers that parse but cannot be true are
    named here.
    """
    try:
        msg_id = int(fields[0])
    except (IndexError, ValueError):
        return None
    rules = _RULES.get(msg_id)
    if rules is None:
        return None
    message, checks = rules
    for index, name, rule in checks:
        if index >= len(fields):
            continue
        try:
            value = float(fields[index] or 0)
        except ValueError:
            continue
        if not math.isfinite(value):
            return f"{message} with {name}={fields[index][:40]!r} (not a finite number)"
        if rule == "qty" and value < 0:
            return f"{message} with {name}={value:g} (a quantity below 0)"
        if rule == "shares" and value <= 0:
            return f"{message} with {name}={value:g} (an execution of no shares)"
    return None


class _DecoderLog:
    """Stands in for the decoder's logger: forwards everything, reports each exception."""

    def __init__(self, logger: logging.Logger, report: InboundReport) -> None:
        self._logger = logger
        self._report = report

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._logger.exception(msg, *args, **kwargs)
        text = str(msg)
        self._report("malformed", text if len(text) <= 200 else text[:197] + "...")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def install_inbound_guard(ib: Any, report: InboundReport) -> bool:
    """Guard the decoder of ``ib``'s client (an ``IB`` or a ``Client``); once per client.

    Returns False when it was already installed or the decoder does not
    look as expected (then nothing is changed and a warning is logged).
    """
    client = getattr(ib, "client", ib)
    if getattr(client, _ATTR, False):
        return False
    decoder: Any = getattr(client, "decoder", None)
    handlers = getattr(decoder, "handlers", None)
    if not isinstance(handlers, dict) or not all(k in handlers for k in _RULES):
        _log.warning("ib_async's decoder has no handler table as expected: no inbound guard")
        return False
    for msg_id in _RULES:
        handlers[msg_id] = _guarded(handlers[msg_id], report)
    logger = getattr(decoder, "logger", None)
    if isinstance(logger, logging.Logger):
        decoder.logger = _DecoderLog(logger, report)
    setattr(client, _ATTR, True)
    return True


def _guarded(handler: Callable[[list[str]], None], report: InboundReport) -> Any:
    def guarded(fields: list[str]) -> None:
        problem = order_message_problem(fields)
        if problem is not None:
            report("impossible_number", f"{problem}: message dropped, not applied")
            return
        handler(fields)

    return guarded
