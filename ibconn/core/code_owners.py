"""Who reports a TWS code: the session, or the service that owns the request it names.

The supervisor logs the session's codes ("TWS 2104 (farm_ok): ..." under
``errors``); a code about one order or request (a rejection, a cancel's 202,
a query's "no data") belongs to that order or request. The supervisor and
the routing of ib_async's records (:mod:`ibconn.core.ib_async_logs`) both
decide by :func:`reported_per_request`, so each code is logged once.
"""

from __future__ import annotations

from ibconn.core.codes import CodeCategory, CodeInfo

__all__ = ["REQUEST_CODE_CATEGORIES", "reported_per_request"]

REQUEST_CODE_CATEGORIES: frozenset[CodeCategory] = frozenset(
    {
        CodeCategory.ORDER_REJECTED,
        CodeCategory.ORDER_CANCELLED,
        CodeCategory.CANCEL_FAILED,
        CodeCategory.ORDER_WARNING,
        CodeCategory.NO_SECURITY_DEFINITION,
        CodeCategory.NO_DATA,
        CodeCategory.QUERY_CANCELLED,
    }
)
"""Categories of codes about one order or request (when the code names one)."""


def reported_per_request(info: CodeInfo, req_id: int) -> bool:
    """Whether a code is about the order or request ``req_id`` rather than the session."""
    return req_id != -1 and info.category in REQUEST_CODE_CATEGORIES
