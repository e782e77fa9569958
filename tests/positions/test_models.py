"""The position models (ibconn.positions.models)."""

from __future__ import annotations

from ibconn.core.numbers import number_or_none
from ibconn.positions.models import MismatchKind, PositionMismatch, clean_number


def test_clean_number_is_the_one_converter() -> None:
    assert clean_number is number_or_none
    assert [
        clean_number(v) for v in ("1234.5", "", True, float("nan"), 1.7976931348623157e308)
    ] == [
        1234.5,
        None,
        None,
        None,
        None,
    ]


def test_a_mismatch_says_how_much_the_unapplied_fills_explain() -> None:
    mismatch = PositionMismatch(
        account="DU1",
        con_id=1,
        symbol="AAPL",
        kind=MismatchKind.QUANTITY,
        ibconn_quantity=100,
        broker_quantity=150,
        ibconn_avg_cost=10.0,
        broker_avg_cost=10.0,
        fills=(),
        explained_quantity=20,
        trigger="timer",
    )
    assert (mismatch.difference, mismatch.unexplained_quantity) == (50, 30)
    assert "quantity 100 at ibconn, 150 at the broker" in str(mismatch)
