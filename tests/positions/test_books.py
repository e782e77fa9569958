"""The books (ibconn.positions.books): creating, finding, snapshotting and publishing positions."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import drain, next_item
from ib_async import Contract

import ibconn.positions.books as books_module
from ibconn import InvalidInputError
from ibconn.positions.books import display_name, multiplier_of
from ibconn.positions.models import MarkSource, PositionSource

from .fakes import AAPL, ES_Z6, FAKE_ACCOUNT, Parts, portfolio


@pytest.mark.parametrize(
    ("multiplier", "expected"),
    [
        ("50", 50.0),
        ("", 1.0),
        ("0", 1.0),
        ("-5", 1.0),
        ("nan", 1.0),
        ("1.7976931348623157E308", 1.0),
    ],
)
def test_a_contract_without_a_meaningful_multiplier_counts_as_one(
    multiplier: str, expected: float
) -> None:
    assert multiplier_of(Contract(conId=1, multiplier=multiplier)) == expected


def test_display_names_follow_tws() -> None:
    assert display_name(ES_Z6) == "ESZ6"
    assert display_name(Contract(conId=7, symbol="EUR", secType="CASH", currency="USD")) == (
        "EUR.USD"
    )
    assert display_name(Contract(conId=7, symbol="AAPL", secType="STK")) == "AAPL"
    assert display_name(Contract(conId=7)) == "7"


def test_a_new_book_is_flat_and_priced_with_its_multiplier() -> None:
    parts = Parts()
    book = parts.books.new_book(FAKE_ACCOUNT, ES_Z6)
    assert (book.symbol, book.multiplier, book.quantity) == ("ESZ6", 50.0, 0)
    assert parts.books.get((FAKE_ACCOUNT, ES_Z6.conId)) is book
    assert len(parts.books) == 1 and parts.books.open_keys() == set()


def test_an_instrument_is_found_by_symbol_conid_or_contract() -> None:
    parts = Parts()
    aapl = parts.books.new_book(FAKE_ACCOUNT, AAPL)
    es = parts.books.new_book(FAKE_ACCOUNT, ES_Z6)
    assert parts.books.match("aapl ") == [aapl]
    assert parts.books.match(ES_Z6.conId) == [es]
    assert parts.books.match("ESZ6") == [es]
    assert parts.books.match("ES") == []  # a future is named by its local symbol
    assert parts.books.match(Contract(symbol="ES", secType="FUT")) == [es]
    assert parts.books.match("MSFT") == []
    with pytest.raises(InvalidInputError, match="conId"):
        parts.books.match(True)


async def test_publishing_streams_a_snapshot_and_tracks_what_is_held() -> None:
    parts = Parts()
    updates = parts.books.subscribe(None, None)
    only_other = parts.books.subscribe("DU2", None)
    book = parts.books.new_book(FAKE_ACCOUNT, AAPL)
    book.ledger.apply(100, 10, 1)
    parts.books.publish(book, PositionSource.FILL)
    published = await next_item(updates)
    assert (published.quantity, published.avg_cost, published.source) == (
        100,
        pytest.approx(10.01),
        PositionSource.FILL,
    )
    assert published.market_price is None and published.market_value is None
    assert parts.books.held == {AAPL.conId}
    book.ledger.apply(-100, 11, 1)
    parts.books.publish(book, PositionSource.FILL)
    flat = await next_item(updates)
    assert flat.is_flat and flat.avg_cost is None and flat.market_value == 0.0
    assert parts.books.held == set()
    assert drain(only_other) == []
    assert parts.books.positions(None, include_flat=False) == []
    assert [p.symbol for p in parts.books.positions(None, include_flat=True)] == ["AAPL"]


async def test_a_mark_is_published_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(books_module, "MARK_PUBLISH_INTERVAL", 0.05)
    parts = Parts()
    book = parts.books.new_book(FAKE_ACCOUNT, AAPL)
    book.ledger.apply(100, 10, 0)
    parts.books.publish(book, PositionSource.FILL)
    updates = parts.books.subscribe(None, None)

    def price(value: Any) -> None:
        if parts.marks.on_portfolio(portfolio(value)):
            parts.books.mark_changed(AAPL.conId)

    price(11.0)
    first = drain(updates)
    assert [(p.source, p.market_price, p.mark_source) for p in first] == [
        (PositionSource.MARK, 11.0, MarkSource.PORTFOLIO)
    ]
    assert first[0].unrealized_pnl == pytest.approx(100.0)
    price(12.0)
    price(13.0)  # within the interval: one later update, with the latest mark
    assert drain(updates) == []
    later = await next_item(updates, timeout=2)
    assert (later.source, later.market_price) == (PositionSource.MARK, 13.0)
    price(float("nan"))  # no price: nothing changes
    assert parts.books.positions(None, include_flat=False)[0].market_price == 13.0


async def test_closing_ends_the_streams_and_cancels_pending_marks() -> None:
    parts = Parts()
    book = parts.books.new_book(FAKE_ACCOUNT, AAPL)
    book.ledger.apply(100, 10, 0)
    parts.books.publish(book, PositionSource.FILL)
    updates = parts.books.subscribe(None, None)
    parts.marks.on_portfolio(portfolio(11.0))
    parts.books.mark_changed(AAPL.conId)
    parts.marks.on_portfolio(portfolio(12.0))
    parts.books.mark_changed(AAPL.conId)
    assert book.mark_handle is not None
    parts.books.close()
    assert book.mark_handle is None
    assert len(drain(updates)) == 1
    with pytest.raises(StopAsyncIteration):
        await updates.__anext__()
    fresh = parts.books.subscribe(None, None)
    parts.books.publish(book, PositionSource.FILL)
    assert len(drain(fresh)) == 1
