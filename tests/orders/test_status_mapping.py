"""TWS's order statuses as ibconn's (ibconn/orders/convert.py)."""

from __future__ import annotations

import pytest

from ibconn.orders.models import OrderStatus
from ibconn.orders.service import map_tws_status

pytestmark = pytest.mark.timeout(30)

S = OrderStatus


@pytest.mark.parametrize(
    ("raw", "filled", "remaining", "expected"),
    [
        ("PendingSubmit", 0, 100, S.PENDING_SUBMIT),
        ("ApiPending", 0, 100, S.PENDING_SUBMIT),
        ("PreSubmitted", 0, 100, S.PRE_SUBMITTED),
        ("Submitted", 0, 100, S.SUBMITTED),
        ("Submitted", 40, 60, S.PARTIALLY_FILLED),
        ("PreSubmitted", 40, 60, S.PARTIALLY_FILLED),
        ("PendingCancel", 40, 60, S.PENDING_CANCEL),
        ("Cancelled", 40, 60, S.CANCELLED),
        ("ApiCancelled", 0, 100, S.CANCELLED),
        ("Filled", 100, 0, S.FILLED),
        ("Inactive", 0, 100, S.INACTIVE),
        ("ValidationError", 0, 100, None),  # ib_async's invention: not a status
        ("ApiUpdate", 0, 100, None),
    ],
)
def test_status_mapping(
    raw: str, filled: float, remaining: float, expected: OrderStatus | None
) -> None:
    assert map_tws_status(raw, filled, remaining) is expected
