"""The books: one ledger per ``(account, con_id)``, their snapshots and their update stream.

:class:`Books` is the one place that creates a position, turns it into the
public :class:`~ibconn.positions.models.Position` and publishes it on
``position_updates()``; ingest, reconciliation and marks change ledgers and
ask it to publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

from ib_async import Contract

from ibconn.contracts.resolver import ContractLike, to_contract
from ibconn.core.numbers import number_or_none
from ibconn.core.streams import FilteredFanout, Subscription
from ibconn.errors import InvalidInputError
from ibconn.orders.models import Fill
from ibconn.positions.marks import MarkBook
from ibconn.positions.models import Position, PositionMismatch, PositionSource
from ibconn.positions.pnl import PositionLedger
from ibconn.positions.ports import ContractLookup

__all__ = [
    "MARK_PUBLISH_INTERVAL",
    "STREAM_CAPACITY",
    "Book",
    "BookKey",
    "Books",
    "display_name",
    "multiplier_of",
    "names_instrument",
]

STREAM_CAPACITY = 10_000
"""Updates a consumer of ``position_updates()`` may fall behind before it gets
:class:`~ibconn.errors.StreamOverflowError`."""

MARK_PUBLISH_INTERVAL = 1.0
"""At most one ``MARK`` update per position per this many seconds (the latest mark wins)."""

BookKey = tuple[str, int]
"""``(account, con_id)``."""


class Book:
    """One position and what ibconn knows about its instrument (mutable, internal)."""

    __slots__ = (
        "account",
        "con_id",
        "contract",
        "currency",
        "fill",
        "last_mark_pub",
        "ledger",
        "mark_handle",
        "mismatch",
        "multiplier",
        "published_mark",
        "sec_type",
        "source",
        "symbol",
        "time",
    )

    def __init__(self, account: str, contract: Contract, multiplier: float) -> None:
        self.account = account
        self.con_id = contract.conId
        self.contract = contract
        self.symbol = display_name(contract)
        self.sec_type = contract.secType
        self.currency = contract.currency
        self.multiplier = multiplier
        self.ledger = PositionLedger(multiplier)
        self.source = PositionSource.BROKER
        self.time = datetime.now(UTC)
        self.fill: Fill | None = None
        self.mismatch: PositionMismatch | None = None
        self.last_mark_pub = -1e18
        self.mark_handle: asyncio.TimerHandle | None = None
        self.published_mark: float | None = None

    @property
    def quantity(self) -> Decimal:
        """The signed quantity now."""
        return self.ledger.state.quantity


def _position_updates() -> FilteredFanout[Position]:
    return FilteredFanout("position_updates", STREAM_CAPACITY)


class Books:
    """Every position ibconn knows, keyed by ``(account, con_id)``, and their stream."""

    def __init__(self, contracts: ContractLookup, marks: MarkBook) -> None:
        self._contracts = contracts
        self._marks = marks
        self._books: dict[BookKey, Book] = {}
        self._held: set[int] = set()  # con_ids of open positions (the ticker filter)
        self._updates = _position_updates()

    # -- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._books)

    def __iter__(self) -> Iterator[Book]:
        return iter(list(self._books.values()))

    def get(self, key: BookKey) -> Book | None:
        """The book of ``(account, con_id)``, if any."""
        return self._books.get(key)

    def open_keys(self) -> set[BookKey]:
        """The keys of every position that is not flat."""
        return {key for key, book in self._books.items() if book.quantity != 0}

    @property
    def held(self) -> set[int]:
        """The conIds of open positions (read-only view for the ticker filter)."""
        return self._held

    def positions(self, account: str | None, *, include_flat: bool) -> list[Position]:
        """Snapshots of the positions (of ``account``), sorted by account and symbol."""
        books = [
            book
            for book in self._books.values()
            if (account is None or book.account == account) and (include_flat or book.quantity != 0)
        ]
        books.sort(key=lambda b: (b.account, b.symbol, b.con_id))
        active = self._marks.active_lines() if self._marks.has_market_data_marks else set()
        return [self.snapshot(book, book.source, active) for book in books]

    def match(self, instrument: ContractLike | int) -> list[Book]:
        """The books of what ``instrument`` (a symbol, a contract or a conId) names."""
        if isinstance(instrument, bool):
            raise InvalidInputError("an instrument is a symbol, a Contract or a conId")
        if isinstance(instrument, int):
            return [b for b in self._books.values() if b.con_id == instrument]
        contract = to_contract(instrument)
        con_id = contract.conId
        if not con_id:
            resolved = self._contracts.cached(instrument)
            con_id = resolved.con_id if resolved is not None else 0
        if con_id:
            matched = [b for b in self._books.values() if b.con_id == con_id]
            if matched:
                return matched
        text = instrument.strip().upper() if isinstance(instrument, str) else ""
        return [b for b in self._books.values() if names_instrument(b, text, contract)]

    # -- changing -------------------------------------------------------------------------

    def new_book(self, account: str, contract: Contract) -> Book:
        """Open a (flat) book; the resolved contract and multiplier win when known."""
        resolved = self._contracts.by_con_id(contract.conId)
        if resolved is not None:
            contract = resolved.contract
            multiplier = resolved.multiplier
        else:
            multiplier = multiplier_of(contract)
        book = Book(account, contract, multiplier)
        self._books[(account, contract.conId)] = book
        return book

    def publish(self, book: Book, source: PositionSource) -> None:
        """Publish the book's position now, saying why (``source``)."""
        book.source = source
        if book.quantity != 0:
            self._held.add(book.con_id)
        elif not any(b.quantity != 0 for b in self._books.values() if b.con_id == book.con_id):
            self._held.discard(book.con_id)
        position = self.snapshot(book, source)
        book.published_mark = position.market_price
        if source is not PositionSource.RECONCILED:
            book.mismatch = None
        self._updates.publish(position)

    def snapshot(
        self, book: Book, source: PositionSource, active: set[int] | None = None
    ) -> Position:
        """The public, frozen view of ``book`` (``active``: the subscribed lines, if known)."""
        state = book.ledger.state
        flat = state.quantity == 0
        mark = None if flat else self._marks.mark(book.con_id, active)
        price = mark[0] if mark is not None else None
        value = unrealized = None
        if price is not None:
            value = float(state.market_value(price, book.ledger.multiplier))
            unrealized = float(state.unrealized(price, book.ledger.multiplier))
        return Position(
            account=book.account,
            con_id=book.con_id,
            symbol=book.symbol,
            contract=book.contract,
            sec_type=book.sec_type,
            currency=book.currency,
            multiplier=book.multiplier,
            quantity=float(state.quantity),
            avg_cost=None if flat else float(state.avg_cost),
            avg_price=None if flat else float(state.avg_price),
            market_price=price,
            market_value=value if not flat else 0.0,
            unrealized_pnl=unrealized if not flat else 0.0,
            realized_pnl=float(state.realized),
            commission=float(state.commission),
            time=book.time,
            source=source,
            mark_source=mark[2] if mark is not None else None,
            mark_time=mark[1] if mark is not None else None,
            fill=book.fill if source in (PositionSource.FILL, PositionSource.CORRECTION) else None,
            mismatch=book.mismatch if source is PositionSource.RECONCILED else None,
        )

    # -- marks ----------------------------------------------------------------------------

    def mark_changed(self, con_id: int) -> None:
        """Publish a ``MARK`` update of every open position in ``con_id``, at most one per
        :data:`MARK_PUBLISH_INTERVAL` per position (a later one is scheduled)."""
        loop = asyncio.get_running_loop()
        for book in self._books.values():
            if book.con_id != con_id or book.quantity == 0 or book.mark_handle is not None:
                continue
            due = book.last_mark_pub + MARK_PUBLISH_INTERVAL
            if loop.time() >= due:
                self._publish_mark(book)
            else:
                book.mark_handle = loop.call_at(due, self._publish_mark, book)

    def _publish_mark(self, book: Book) -> None:
        book.mark_handle = None
        book.last_mark_pub = asyncio.get_running_loop().time()
        mark = self._marks.mark(book.con_id)
        if mark is None or mark[0] == book.published_mark or book.quantity == 0:
            return
        book.time = mark[1]
        self.publish(book, PositionSource.MARK)

    # -- streams --------------------------------------------------------------------------

    def subscribe(self, account: str | None, capacity: int | None) -> Subscription[Position]:
        """A stream of every published position (of ``account``) from now on."""
        if account is None:
            return self._updates.subscribe(None, capacity)
        return self._updates.subscribe(lambda p: p.account == account, capacity)

    def close(self) -> None:
        """Cancel pending mark updates and end every stream; later subscribers get new ones."""
        for book in self._books.values():
            if book.mark_handle is not None:
                book.mark_handle.cancel()
                book.mark_handle = None
        self._updates.close()
        self._updates = _position_updates()


def display_name(contract: Contract) -> str:
    """A position's symbol: the local symbol (``ESZ6``), ``EUR.USD`` for cash, else the symbol."""
    if contract.secType == "CASH":
        return contract.localSymbol or f"{contract.symbol}.{contract.currency}"
    return contract.localSymbol or contract.symbol or str(contract.conId)


def names_instrument(book: Book, text: str, contract: Contract) -> bool:
    """Whether ``book`` holds what a symbol text (or an unqualified contract) names."""
    theirs = book.contract
    if text:
        return book.symbol.upper() == text or (
            theirs.symbol.upper() == text and book.sec_type in ("STK", "")
        )
    local = (contract.localSymbol or "").upper()
    if local:
        return (theirs.localSymbol or "").upper() == local
    return bool(contract.symbol) and (
        theirs.symbol.upper() == contract.symbol.upper()
        and (not contract.secType or contract.secType == book.sec_type)
    )


def multiplier_of(contract: Contract) -> float:
    """The contract's multiplier; 1 when it has none (or a meaningless one)."""
    value = number_or_none(contract.multiplier)
    return value if value is not None and value > 0 else 1.0
