"""The fill ledger: exact cumulative quantity and average price of one order.

TWS reports each execution with an exec id. It may report the same
execution twice (a live fill, then again in a ``reqExecutions`` answer after
a reconnect) and it corrects an execution by sending a new exec id with the
same prefix (everything up to the last dot) and a higher suffix. The ledger

* ignores an exec id it has already seen (``DUPLICATE``),
* replaces the fill a correction corrects instead of adding it
  (``CORRECTION``), and ignores a revision older than the one it holds
  (``STALE``),
* sums quantities and ``quantity * price`` in :class:`decimal.Decimal`,
  built from the shortest text of each float (``Decimal(repr(x))``), so that
  the cumulative quantity and the volume-weighted average price are exact
  for any number of partial fills (binary float sums drift: 0.1 + 0.2).

It is plain data with no I/O; the order service owns one per order.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from decimal import Decimal

from ibconn.orders.models import Fill, exec_prefix

__all__ = ["FillLedger", "LedgerOutcome", "LedgerResult", "exec_revision", "to_decimal"]


class LedgerOutcome(enum.Enum):
    """What :meth:`FillLedger.add` did with a fill."""

    NEW = "new"
    """A new execution: counted."""
    CORRECTION = "correction"
    """A correction: it replaced the fill it corrects (``replaced``)."""
    DUPLICATE = "duplicate"
    """This exec id was already in the ledger: ignored."""
    STALE = "stale"
    """An older revision of an execution the ledger already holds a newer one of: ignored."""


@dataclass(frozen=True, slots=True)
class LedgerResult:
    """The outcome of one :meth:`FillLedger.add`: the fill as stored and what it replaced."""

    outcome: LedgerOutcome
    fill: Fill
    replaced: Fill | None = None

    @property
    def counted(self) -> bool:
        """Whether the ledger changed (a new fill or a correction)."""
        return self.outcome in (LedgerOutcome.NEW, LedgerOutcome.CORRECTION)


def to_decimal(value: float) -> Decimal:
    """The exact decimal of a float's shortest text: ``0.1`` -> ``Decimal("0.1")``."""
    return Decimal(repr(float(value)))


def exec_revision(exec_id: str) -> tuple[int, str]:
    """Sort key of an exec id's revision (the part after the last dot)."""
    _, dot, suffix = exec_id.rpartition(".")
    if not dot:
        return (0, "")
    try:
        return (int(suffix, 16), suffix)
    except ValueError:
        return (0, suffix)


@dataclass(slots=True)
class _Commission:
    commission: float
    currency: str | None
    realized_pnl: float | None


class FillLedger:
    """Fills of one order, deduplicated by exec id, corrections applied."""

    __slots__ = (
        "_by_prefix",
        "_commissions",
        "_last",
        "_order",
        "_quantity",
        "_seen",
        "_value",
    )

    def __init__(self) -> None:
        self._by_prefix: dict[str, Fill] = {}
        self._order: list[str] = []  # prefixes in first-arrival order
        self._seen: set[str] = set()
        self._commissions: dict[str, _Commission] = {}
        self._quantity = Decimal(0)
        self._value = Decimal(0)
        self._last: str | None = None  # prefix of the most recently counted fill

    def __len__(self) -> int:
        return len(self._by_prefix)

    def __contains__(self, exec_id: object) -> bool:
        return exec_id in self._seen

    def add(self, fill: Fill) -> LedgerResult:
        """Record ``fill``; see :class:`LedgerOutcome` for what can happen."""
        if fill.exec_id in self._seen:
            current = self._by_prefix.get(fill.exec_prefix, fill)
            return LedgerResult(LedgerOutcome.DUPLICATE, current)
        self._seen.add(fill.exec_id)
        prefix = fill.exec_prefix
        old = self._by_prefix.get(prefix)
        if old is not None and exec_revision(fill.exec_id) <= exec_revision(old.exec_id):
            return LedgerResult(LedgerOutcome.STALE, old)
        pending = self._commissions.pop(fill.exec_id, None)
        if pending is not None:
            fill = dataclasses.replace(
                fill,
                commission=pending.commission,
                commission_currency=pending.currency,
                realized_pnl=pending.realized_pnl,
            )
        if old is None:
            self._order.append(prefix)
            self._by_prefix[prefix] = fill
            self._last = prefix
            self._count(fill, +1)
            return LedgerResult(LedgerOutcome.NEW, fill)
        if fill.corrects is None:
            fill = dataclasses.replace(fill, corrects=old.exec_id)
        self._count(old, -1)
        self._by_prefix[prefix] = fill
        if self._last == prefix or self._last is None:
            self._last = prefix
        self._count(fill, +1)
        return LedgerResult(LedgerOutcome.CORRECTION, fill, old)

    def set_commission(
        self,
        exec_id: str,
        commission: float,
        currency: str | None = None,
        realized_pnl: float | None = None,
    ) -> Fill | None:
        """Attach a commission report to its fill; returns the updated fill.

        A report for an exec id not seen yet is kept and attached when the
        fill arrives (``None`` is returned then). A report for a revision
        that a correction has replaced is ignored.
        """
        current = self._by_prefix.get(exec_prefix(exec_id))
        if current is None or exec_id not in self._seen:
            self._commissions[exec_id] = _Commission(commission, currency, realized_pnl)
            return None
        if current.exec_id != exec_id:
            return None
        updated = dataclasses.replace(
            current,
            commission=commission,
            commission_currency=currency,
            realized_pnl=realized_pnl,
        )
        self._by_prefix[current.exec_prefix] = updated
        return updated

    def _count(self, fill: Fill, sign: int) -> None:
        quantity = to_decimal(fill.quantity)
        self._quantity += sign * quantity
        self._value += sign * quantity * to_decimal(fill.price)

    # -- totals ----------------------------------------------------------------

    @property
    def fills(self) -> tuple[Fill, ...]:
        """The counted fills in first-arrival order (a correction takes its original's place)."""
        return tuple(self._by_prefix[prefix] for prefix in self._order)

    @property
    def quantity(self) -> Decimal:
        """Cumulative filled quantity, exact."""
        return self._quantity

    @property
    def filled(self) -> float:
        """Cumulative filled quantity as a float."""
        return float(self._quantity)

    @property
    def avg_price_exact(self) -> Decimal | None:
        """Volume-weighted average price, exact to 28 significant digits; ``None`` if unfilled."""
        if self._quantity == 0:
            return None
        return self._value / self._quantity

    @property
    def avg_price(self) -> float | None:
        """Volume-weighted average price as a float; ``None`` when nothing is filled."""
        exact = self.avg_price_exact
        return None if exact is None else float(exact)

    @property
    def last_price(self) -> float | None:
        """Price of the most recently received fill (its corrected price if corrected)."""
        if self._last is None:
            return None
        return self._by_prefix[self._last].price

    @property
    def commission(self) -> float | None:
        """Sum of the commissions reported so far; ``None`` if none was reported."""
        reported = [f.commission for f in self._by_prefix.values() if f.commission is not None]
        if not reported:
            return None
        return float(sum((to_decimal(c) for c in reported), Decimal(0)))

    def get(self, exec_id: str) -> Fill | None:
        """The counted fill with this exec id, if it is the current revision."""
        fill = self._by_prefix.get(exec_prefix(exec_id))
        return fill if fill is not None and fill.exec_id == exec_id else None
