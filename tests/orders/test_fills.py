"""The fill ledger: exact arithmetic, deduplication and corrections (no socket)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ibconn.orders.fills import FillLedger, LedgerOutcome, exec_revision
from ibconn.orders.models import Fill, OrderAction, exec_prefix

T0 = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def fill(exec_id: str, quantity: float, price: float, seconds: int = 0) -> Fill:
    return Fill(
        exec_id=exec_id,
        order_ref="ref-1",
        order_id=1,
        perm_id=100,
        symbol="AAPL",
        con_id=265598,
        action=OrderAction.BUY,
        quantity=quantity,
        price=price,
        time=T0 + timedelta(seconds=seconds),
    )


# (fills as (exec id, quantity, price), expected filled, expected exact average)
ARITHMETIC: list[tuple[str, list[tuple[str, float, float]], str, str | None]] = [
    ("nothing", [], "0", None),
    ("one fill", [("e1.01", 100, 190.02)], "100", "190.02"),
    ("two equal", [("e1.01", 100, 190.02), ("e2.01", 100, 190.02)], "200", "190.02"),
    ("vwap", [("e1.01", 100, 10.0), ("e2.01", 300, 11.0)], "400", "10.75"),
    (
        "float drift",  # 0.1 + 0.2 != 0.3 in binary floats
        [("e1.01", 0.1, 1.1), ("e2.01", 0.2, 1.1)],
        "0.3",
        "1.1",
    ),
    (
        "many small fills",
        [(f"e{i}.01", 1, 190.01) for i in range(1000)],
        "1000",
        "190.01",
    ),
    (
        "odd split",
        [("a.01", 33, 100.01), ("b.01", 33, 100.02), ("c.01", 34, 100.03)],
        "100",
        "100.0201",
    ),
    (
        "duplicate exec id counted once",
        [("e1.01", 100, 190.0), ("e1.01", 100, 190.0)],
        "100",
        "190",
    ),
    (
        "correction replaces",
        [("e1.01", 100, 190.0), ("e2.01", 100, 191.0), ("e1.02", 100, 189.0)],
        "200",
        "190",
    ),
    (
        "correction of the quantity",
        [("e1.01", 100, 190.0), ("e1.02", 60, 190.0)],
        "60",
        "190",
    ),
    (
        "second correction",
        [("e1.01", 100, 190.0), ("e1.02", 100, 189.0), ("e1.03", 100, 188.5)],
        "100",
        "188.5",
    ),
    (
        "stale revision after the correction is ignored",
        [("e1.02", 100, 189.0), ("e1.01", 100, 190.0)],
        "100",
        "189",
    ),
    (
        "fractional forex amounts",
        [("fx1.01", 25000, 1.08505), ("fx2.01", 75000, 1.0851)],
        "100000",
        "1.0850875",
    ),
]


@pytest.mark.parametrize(
    ("fills", "filled", "average"),
    [pytest.param(f, q, a, id=name) for name, f, q, a in ARITHMETIC],
)
def test_ledger_arithmetic(
    fills: list[tuple[str, float, float]], filled: str, average: str | None
) -> None:
    ledger = FillLedger()
    for i, (exec_id, quantity, price) in enumerate(fills):
        ledger.add(fill(exec_id, quantity, price, seconds=i))
    assert ledger.quantity == Decimal(filled)
    assert ledger.filled == float(filled)
    if average is None:
        assert ledger.avg_price is None and ledger.avg_price_exact is None
    else:
        assert ledger.avg_price_exact == Decimal(average)
        assert ledger.avg_price == float(average)


def test_outcomes_and_replaced_fill() -> None:
    ledger = FillLedger()
    first = ledger.add(fill("0001.aa.01", 100, 190.0))
    assert first.outcome is LedgerOutcome.NEW and first.counted
    again = ledger.add(fill("0001.aa.01", 100, 190.0))
    assert again.outcome is LedgerOutcome.DUPLICATE and not again.counted
    corrected = ledger.add(fill("0001.aa.02", 100, 189.5))
    assert corrected.outcome is LedgerOutcome.CORRECTION
    assert corrected.replaced is not None and corrected.replaced.exec_id == "0001.aa.01"
    assert corrected.fill.corrects == "0001.aa.01"
    assert [f.exec_id for f in ledger.fills] == ["0001.aa.02"]
    stale = ledger.add(fill("0001.aa.01", 100, 190.0))
    assert stale.outcome is LedgerOutcome.DUPLICATE
    assert ledger.avg_price == 189.5


def test_commissions_attach_to_their_fills_in_any_order() -> None:
    ledger = FillLedger()
    ledger.add(fill("e1.01", 100, 10.0, seconds=0))
    updated = ledger.set_commission("e1.01", 1.0, "USD", 0.0)
    assert updated is not None and updated.commission == 1.0
    assert updated.commission_currency == "USD"
    # a report that arrives before its fill is attached when the fill comes
    assert ledger.set_commission("e2.01", 0.35, "USD") is None
    result = ledger.add(fill("e2.01", 100, 10.0, seconds=1))
    assert result.fill.commission == 0.35
    assert ledger.commission == pytest.approx(1.35)
    assert [f.commission for f in ledger.fills] == [1.0, 0.35]
    # the report of a corrected (replaced) revision is ignored
    ledger.add(fill("e1.02", 100, 10.5, seconds=2))
    assert ledger.set_commission("e1.01", 9.0) is None
    assert ledger.commission == pytest.approx(0.35)
    assert ledger.last_price == 10.0  # the newest fill is e2; e1 was only corrected


def test_exec_id_helpers() -> None:
    assert exec_prefix("0000e0d5.6578a3b4.01.01") == "0000e0d5.6578a3b4.01"
    assert exec_prefix("nodots") == "nodots"
    assert exec_revision("x.0a") > exec_revision("x.09")
    assert exec_revision("x.02") > exec_revision("x.01")
