"""Fill ingest: each execution moves its position exactly once.

:class:`ExecutionLog` remembers, per execution (its exec id up to the last
dot), the latest revision applied or absorbed into the broker's figures, and
since when an execution TWS reported waits to be applied.
:class:`FillIngest` applies the order service's fills to the ledgers (a
correction re-prices its fill) and seeds the books from the broker's
positions at the first connect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from ib_async import Contract
from ib_async import Fill as IBFill
from ib_async import Position as IBPosition

from ibconn.core.logs import get_logger
from ibconn.core.numbers import number_or_none
from ibconn.orders.fills import exec_revision
from ibconn.orders.models import Fill, exec_prefix
from ibconn.positions.books import Books
from ibconn.positions.models import PositionSource
from ibconn.positions.ports import ContractLookup

__all__ = ["ExecutionLog", "FillIngest", "later_revision"]

_log = get_logger("positions")


def later_revision(current: str | None, exec_id: str) -> str:
    """Of two exec ids of one execution, the later revision (``current`` may be unknown)."""
    if current is None or exec_revision(exec_id) > exec_revision(current):
        return exec_id
    return current


class ExecutionLog:
    """The executions ibconn applied or absorbed, and those still waiting to be applied."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}  # exec prefix -> exec id applied or absorbed
        self._pending_since: dict[str, float] = {}  # exec prefix -> first seen unapplied

    def seen(self, prefix: str) -> str | None:
        """The revision of execution ``prefix`` applied or absorbed, if any."""
        return self._seen.get(prefix)

    def applied(self, exec_id: str) -> None:
        """``exec_id`` moved its position (it no longer waits)."""
        prefix = exec_prefix(exec_id)
        self._seen[prefix] = exec_id
        self._pending_since.pop(prefix, None)

    def absorb(self, exec_id: str) -> None:
        """The broker's figures hold ``exec_id``: never apply it (nor an older revision)."""
        prefix = exec_prefix(exec_id)
        self._seen[prefix] = later_revision(self._seen.get(prefix), exec_id)
        self._pending_since.pop(prefix, None)

    def waiting(self, prefix: str, now: float) -> float:
        """Since when execution ``prefix`` waits to be applied (first call: ``now``)."""
        return self._pending_since.setdefault(prefix, now)

    def waited(self, prefix: str, now: float) -> float:
        """Seconds execution ``prefix`` has waited (0 when it does not wait)."""
        return now - self._pending_since.get(prefix, now)


class FillIngest:
    """Applies fills to the books, each execution once; counts fills and corrections."""

    def __init__(
        self,
        books: Books,
        log: ExecutionLog,
        contracts: ContractLookup,
        default_account: Callable[[], str],
        known_contract: Callable[[Fill], Contract | None],
    ) -> None:
        """``known_contract`` finds the contract of a fill whose conId the resolver does
        not know (from what ib_async holds), for a position that is new."""
        self._books = books
        self._log = log
        self._contracts = contracts
        self._default_account = default_account
        self._known_contract = known_contract
        self.fills_applied = 0
        """Fills that moved a position."""
        self.corrections = 0
        """Execution corrections that re-priced a fill."""

    def seed(self, executions: Iterable[IBFill], positions: Iterable[IBPosition]) -> None:
        """The first session: the broker's positions as they are; today's executions are in
        them already, so they are absorbed, never applied."""
        for ib_fill in executions:
            if ib_fill.execution.execId:
                self._log.absorb(ib_fill.execution.execId)
        for pos in positions:
            key = (pos.account, pos.contract.conId)
            quantity = number_or_none(pos.position) or 0.0
            book = self._books.get(key)
            if book is None:
                if quantity == 0:
                    continue
                book = self._books.new_book(pos.account, pos.contract)
            book.ledger.reset(quantity, number_or_none(pos.avgCost) or 0.0)
            book.time = datetime.now(UTC)
            self._books.publish(book, PositionSource.BROKER)

    def apply(self, fill: Fill) -> None:
        """Move the fill's position (or re-price it, for a correction); once per revision."""
        prefix = fill.exec_prefix
        seen = self._log.seen(prefix)
        if seen == fill.exec_id:
            return
        key = (fill.account or self._default_account(), fill.con_id)
        book = self._books.get(key)
        if seen is not None:  # a correction of a fill applied or absorbed earlier
            if exec_revision(fill.exec_id) <= exec_revision(seen):
                return
            self._log.applied(fill.exec_id)
            if book is None:
                return
            delta = book.ledger.correct(
                fill.exec_id, fill.signed_quantity, fill.price, fill.commission or 0.0
            )
            if delta is None:
                return  # absorbed into the broker's figures before: nothing to re-price
            self.corrections += 1
            book.fill = fill
            book.time = fill.time
            self._books.publish(book, PositionSource.CORRECTION)
            return
        self._log.applied(fill.exec_id)
        if book is None:
            book = self._books.new_book(key[0], self._contract_for(fill))
        book.ledger.apply(fill.signed_quantity, fill.price, fill.commission or 0.0, fill.exec_id)
        self.fills_applied += 1
        book.fill = fill
        book.time = fill.time
        self._books.publish(book, PositionSource.FILL)

    def _contract_for(self, fill: Fill) -> Contract:
        resolved = self._contracts.by_con_id(fill.con_id)
        if resolved is not None:
            return resolved.contract
        known = self._known_contract(fill)
        if known is not None:
            return known
        _log.warning(
            "contract of conId {} unknown: position in {} kept with multiplier 1",
            fill.con_id,
            fill.symbol,
        )
        return Contract(conId=fill.con_id, symbol=fill.symbol)
