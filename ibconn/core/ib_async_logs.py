"""ib_async's standard-library log records, routed into ibconn's loguru categories.

ib_async logs through :mod:`logging` (loggers ``ib_async.*``). With no handler
anywhere, Python's last-resort handler prints its WARNING and ERROR records to
stderr, so an ordinary reconnect or cancel would print ("Peer closed
connection.", "Error 202, reqId 6: Order Canceled"). Importing ibconn installs
one :class:`IbAsyncRouter` on the ``ib_async`` logger: a handler is then found,
the last-resort handler stays quiet, and the records go to loguru, where
ibconn's sinks (none by default) decide what is written.

The router only adds a handler: the root logger is never touched and
``propagate`` stays on, so an application's own ``logging`` configuration
still receives ib_async's records. Only while ibconn's own sinks show them
(:func:`route`) does the ``ib_async`` logger stop propagating to the root
logger, so that a record is not written twice; :func:`unroute` restores its
level and flag. Handlers an application put on ``ib_async`` (or below) always
get every record.

Each record is given a category and a level by :data:`RULES` (the logger and
the function that logged it). Whatever ibconn reports itself (connects and
losses, order and position updates) is demoted to ``DEBUG``; ib_async's line
about a TWS code is re-levelled from the code table (:mod:`ibconn.core.codes`):
202 at ``INFO``, warnings at ``WARNING``, errors at ``ERROR``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from loguru import logger

from ibconn.core.code_owners import reported_per_request
from ibconn.core.codes import CodeInfo, lookup
from ibconn.core.log_categories import Category

__all__ = [
    "IB_ASYNC_LOGGER",
    "RULES",
    "IbAsyncRouter",
    "Routed",
    "Rule",
    "classify_record",
    "install",
    "route",
    "routed",
    "unroute",
]

IB_ASYNC_LOGGER: Final = "ib_async"

_NEVER = 0  # demote_up_to: keep every level
_INFO = logging.INFO  # demote INFO and DEBUG to DEBUG, keep warnings and errors
_ALL = logging.CRITICAL  # every record becomes DEBUG


@dataclass(frozen=True, slots=True)
class Rule:
    """Where the records of one ib_async logger (and some of its functions) go.

    Records at or below ``demote_up_to`` (a ``logging`` level) become ``DEBUG``:
    ibconn reports the same event itself, in its own words.
    """

    logger: str
    functions: frozenset[str] | None
    category: Category
    demote_up_to: int
    starts: str = ""
    """Only records whose message starts with this (``""``: every record)."""


def _rule(
    logger: str, functions: str | None, category: Category, demote_up_to: int, starts: str = ""
) -> Rule:
    names = frozenset(functions.split()) if functions is not None else None
    return Rule(f"{IB_ASYNC_LOGGER}.{logger}", names, category, demote_up_to, starts)


RULES: tuple[Rule, ...] = (
    # connects, handshakes, socket losses: the supervisor reports each as a state change
    _rule("client", None, "connection", _ALL),
    # a refused attempt: the supervisor logs the first at WARNING and the quick retries
    # that follow at DEBUG; ib_async would add an ERROR line for each (about 200 per outage)
    _rule("ib", "connectAsync", "connection", _ALL, starts="API connection failed"),
    _rule("ib", "connectAsync disconnect", "connection", _INFO),
    # order objects dumped on every change: the orders category logs them (the audit tap)
    # (order_status: ibconn.wire.ib_compat's orderStatus, logging as ib_async.wrapper)
    _rule(
        "wrapper",
        "openOrder orderStatus order_status execDetails commissionReport completedOrder error",
        "orders",
        _ALL,
    ),
    # (place_new_order: ibconn.wire.ib_compat's placeOrder, logging as ib_async.ib)
    _rule("ib", "placeOrder place_new_order cancelOrder reqGlobalCancel", "orders", _ALL),
    _rule("wrapper", "position updatePortfolio", "positions", _ALL),
    _rule("ib", "cancelPnL cancelPnLSingle", "positions", _NEVER),
)
"""The routing table, first match wins; anything else keeps its level as ``connection``."""

_DEFAULT_CATEGORY: Category = "connection"

_CODE_LINE = re.compile(r"(?:Error|Warning) (-?\d+), reqId (-?\d+): (.*)", re.DOTALL)
"""ib_async's line about a TWS code (``wrapper.error``)."""


_MARKET_DATA_FUNCTIONS = (
    "tick",
    "priceSizeTick",
    "updateMkt",
    "mktDepth",
    "reqMkt",
    "cancelMkt",
    "reqHistorical",
    "reqTickByTick",
    "reqRealTimeBars",
)


def _is_market_data(function: str) -> bool:
    return function.startswith(_MARKET_DATA_FUNCTIONS)


def _std_to_loguru(levelno: int) -> str | int:
    """A loguru level name for a standard level number (a number for a custom level)."""
    name = logging.getLevelName(levelno)
    if name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        return str(name)
    return levelno


@dataclass(frozen=True, slots=True)
class Routed:
    """Where one ib_async record goes: category, loguru level, message, extra fields."""

    category: Category
    level: str | int
    message: str
    fields: dict[str, object]


def classify_record(record: logging.LogRecord) -> Routed:
    """Route one ib_async record (pure: no output)."""
    message = record.getMessage()
    name, function = record.name, record.funcName
    if name == f"{IB_ASYNC_LOGGER}.wrapper" and function == "error":
        code_line = _CODE_LINE.match(message)
        if code_line is not None:
            return _route_code(int(code_line[1]), int(code_line[2]), code_line[3])
    for rule in RULES:
        if (
            name == rule.logger
            and (rule.functions is None or function in rule.functions)
            and message.startswith(rule.starts)
        ):
            level = "DEBUG" if record.levelno <= rule.demote_up_to else None
            return Routed(rule.category, level or _std_to_loguru(record.levelno), message, {})
    category: Category = "market_data" if _is_market_data(function) else _DEFAULT_CATEGORY
    return Routed(category, _std_to_loguru(record.levelno), message, {})


def _route_code(code: int, req_id: int, text: str) -> Routed:
    """ib_async's line about a TWS code, at the level of ibconn's code table.

    A session-wide code is logged by ibconn's supervisor already ("TWS 2104
    (farm_ok): ..."): ib_async's copy is demoted to ``DEBUG``. A code about one
    order or request is logged here, once, at its severity (202 at ``INFO``).
    """
    fields: dict[str, object] = {"code": code, "req_id": req_id}
    info: CodeInfo | None = lookup(code, text)
    if info is None:  # unknown: the supervisor's classify() logs it once
        return Routed("errors", "DEBUG", f"TWS {code}, reqId {req_id}: {text}", fields)
    level = info.severity.log_level if reported_per_request(info, req_id) else "DEBUG"
    message = f"TWS {code} ({info.category.value}), reqId {req_id}: {text}"
    return Routed("errors", level, message, fields)


class IbAsyncRouter(logging.Handler):
    """Hand ib_async's records to loguru, in ibconn's categories (:func:`classify_record`)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        """Records that could not be routed (counted, never printed: ibconn stays silent)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Log ``record`` through loguru; never raises into ib_async, never prints."""
        try:
            routed = classify_record(record)
            logger.bind(category=routed.category, origin=record.name, **routed.fields).opt(
                exception=record.exc_info or None
            ).log(routed.level, "{}", routed.message)
        except Exception:  # a log record must never break ib_async's callbacks
            self.failures += 1


_router = IbAsyncRouter()
_saved: tuple[int, bool] | None = None  # the ib_async logger's level and propagate before route()


def install() -> None:
    """Add the router to the ``ib_async`` logger (once; done when ibconn is imported)."""
    ib_logger = logging.getLogger(IB_ASYNC_LOGGER)
    if _router not in ib_logger.handlers:
        ib_logger.addHandler(_router)


def routed() -> bool:
    """Whether ibconn's sinks show ib_async's records (from :func:`route` to :func:`unroute`)."""
    return _saved is not None


def route(levelno: int) -> None:
    """Let ib_async's records from ``levelno`` through, to ibconn's sinks only.

    The ``ib_async`` logger gets level ``min(levelno, INFO)`` (ib_async logs
    request codes and warnings at INFO, which the code table may raise) and
    stops propagating to the root logger while routed.
    """
    global _saved  # noqa: PLW0603 - one routing per process
    install()
    ib_logger = logging.getLogger(IB_ASYNC_LOGGER)
    if _saved is None:
        _saved = (ib_logger.level, ib_logger.propagate)
    ib_logger.setLevel(min(levelno, logging.INFO))
    ib_logger.propagate = False


def unroute() -> None:
    """Give the ``ib_async`` logger back the level and ``propagate`` it had before :func:`route`."""
    global _saved  # noqa: PLW0603
    if _saved is None:
        return
    level, propagate = _saved
    ib_logger = logging.getLogger(IB_ASYNC_LOGGER)
    ib_logger.setLevel(level)
    ib_logger.propagate = propagate
    _saved = None
