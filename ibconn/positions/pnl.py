"""Position arithmetic: quantity, average cost and realized P&L from fills, exactly.

Pure functions and one small class, no I/O; the position service
(:mod:`ibconn.positions.service`) owns one :class:`PositionLedger` per position.

Numbers are :class:`decimal.Decimal`. A float is converted through its
shortest text (``0.1`` becomes ``Decimal("0.1")``, not the binary
0.1000000000000000055...), so quantities, prices, commissions, their sums
and products are exact. The only rounding is in divisions (the average cost
of a position that grows, the share of a commission that belongs to the
closed part of a reversing fill), done to 34 significant digits in a local
context: an error near 1e-30 of the value, far below a cent, and the
caller's decimal context is never touched.

Conventions (TWS's own, so that reconciliation compares like with like):

* ``quantity`` is signed: positive long, negative short.
* ``avg_cost`` is per unit **times the contract multiplier** and **includes
  commissions**, as TWS reports ``avgCost``. A fill that opens or adds gives
  ``avg_cost = (quantity * avg_cost + fill_qty * price * multiplier + commission)
  / new_quantity``; for a short that is the net proceeds per unit (price minus
  commission per unit). Buying one ES future (multiplier 50) at 6000.25 with
  2.25 commission gives an ``avg_cost`` of 300014.75.
* ``avg_price`` is the same average **without** commissions and without the
  multiplier: the average fill price of the open quantity.
* A fill that reduces the position leaves both averages unchanged and
  realizes ``closed * (price * multiplier - avg_cost)`` (negated for a short)
  minus its commission. Realized P&L is therefore net of both commissions:
  the opening one sits in ``avg_cost``, the closing one is subtracted.
* A fill through zero is split: the part that closes the position realizes
  as above with its proportional share of the commission; the rest opens the
  new position at the fill price, with the rest of the commission in its
  ``avg_cost``.
* A flat position has ``avg_cost`` and ``avg_price`` 0; its realized P&L stays.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from decimal import Decimal

from ibconn.orders.models import exec_prefix

__all__ = [
    "FillEffect",
    "JournalEntry",
    "Number",
    "PositionLedger",
    "PositionState",
    "apply_fill",
    "as_decimal",
]

Number = Decimal | float | int | str
"""What the arithmetic accepts: floats go through their shortest text."""

_CONTEXT = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)
_ZERO = Decimal(0)


def as_decimal(value: Number) -> Decimal:
    """``value`` as an exact Decimal (a float through its shortest text).

    Raises ``ValueError`` for NaN, infinities and bools.
    """
    if isinstance(value, bool):
        raise ValueError(f"a number is expected, not a bool ({value!r})")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a finite number is expected, got {value!r}")
        result = Decimal(repr(value))
    else:
        try:
            result = Decimal(value)
        except decimal.InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"a finite number is expected, got {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class PositionState:
    """One position's figures (see the module docstring for the conventions)."""

    quantity: Decimal = _ZERO
    """Signed quantity: positive long, negative short."""
    avg_cost: Decimal = _ZERO
    """Per unit times the multiplier, commissions included (TWS's avgCost); 0 when flat."""
    avg_price: Decimal = _ZERO
    """Average fill price of the open quantity, no commissions, no multiplier; 0 when flat."""
    realized: Decimal = _ZERO
    """Realized P&L, net of commissions."""
    commission: Decimal = _ZERO
    """Commissions of every fill applied."""

    @property
    def is_flat(self) -> bool:
        """Whether the quantity is zero."""
        return self.quantity == 0

    def market_value(self, price: Number, multiplier: Number = 1) -> Decimal:
        """``quantity * price * multiplier``."""
        with decimal.localcontext(_CONTEXT):
            return self.quantity * as_decimal(price) * as_decimal(multiplier)

    def unrealized(self, price: Number, multiplier: Number = 1) -> Decimal:
        """``market_value - quantity * avg_cost`` (TWS's unrealized P&L, net of the
        opening commission)."""
        with decimal.localcontext(_CONTEXT):
            return self.market_value(price, multiplier) - self.quantity * self.avg_cost


@dataclass(frozen=True, slots=True)
class FillEffect:
    """What one fill did to a position."""

    state: PositionState
    """The position after the fill."""
    realized: Decimal | None
    """P&L the fill realized (net of its closing commission); ``None`` if it closed nothing."""
    closed: Decimal
    """Quantity the fill closed (``>= 0``)."""


def apply_fill(
    state: PositionState,
    quantity: Number,
    price: Number,
    commission: Number = 0,
    multiplier: Number = 1,
) -> FillEffect:
    """Apply one fill of signed ``quantity`` (positive buy, negative sell) to ``state``.

    ``commission`` is the fill's commission (positive: a cost) and
    ``multiplier`` the contract's (50 for ES). Raises ``ValueError`` for a zero
    quantity, a non-positive multiplier or a non-finite number.
    """
    q = state.quantity
    dq = as_decimal(quantity)
    p = as_decimal(price)
    c = as_decimal(commission)
    m = as_decimal(multiplier)
    if dq == 0:
        raise ValueError("a fill needs a non-zero quantity")
    if m <= 0:
        raise ValueError(f"the multiplier must be positive, got {multiplier!r}")
    with decimal.localcontext(_CONTEXT):
        total_commission = state.commission + c
        if q == 0 or (q > 0) == (dq > 0):
            new_q = q + dq
            avg_cost = (q * state.avg_cost + dq * p * m + c) / new_q
            avg_price = (q * state.avg_price + dq * p) / new_q
            opened = PositionState(new_q, avg_cost, avg_price, state.realized, total_commission)
            return FillEffect(opened, None, _ZERO)
        closed = min(abs(dq), abs(q))
        close_commission = c if closed == abs(dq) else c * closed / abs(dq)
        sign = 1 if q > 0 else -1
        realized = sign * closed * (p * m - state.avg_cost) - close_commission
        new_q = q + dq
        if new_q == 0:
            avg_cost = avg_price = _ZERO
        elif (new_q > 0) != (q > 0):  # through zero: the rest opens at the fill price
            avg_cost = (new_q * p * m + (c - close_commission)) / new_q
            avg_price = p
        else:
            avg_cost, avg_price = state.avg_cost, state.avg_price
        after = PositionState(
            new_q, avg_cost, avg_price, state.realized + realized, total_commission
        )
        return FillEffect(after, realized, closed)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One fill as the ledger applied it."""

    exec_id: str
    quantity: Decimal
    """Signed: positive buy, negative sell."""
    price: Decimal
    commission: Decimal


class PositionLedger:
    """One position: its state and the fills applied since the last :meth:`reset`.

    The journal lets an execution correction (same exec id up to the last dot)
    or a late commission re-price a fill: the ledger replays every fill since
    the last reset with the corrected one, exactly as if it had happened so.
    A reset (the position set from the broker's figures) starts a new journal
    and keeps the realized P&L and commissions.
    """

    __slots__ = ("_base", "_journal", "_multiplier", "_state")

    def __init__(self, multiplier: Number = 1, state: PositionState | None = None) -> None:
        self._multiplier = as_decimal(multiplier)
        if self._multiplier <= 0:
            raise ValueError(f"the multiplier must be positive, got {multiplier!r}")
        self._base = state if state is not None else PositionState()
        self._state = self._base
        self._journal: list[JournalEntry] = []

    @property
    def state(self) -> PositionState:
        """The current figures."""
        return self._state

    @property
    def multiplier(self) -> Decimal:
        """The contract multiplier used for every fill."""
        return self._multiplier

    @property
    def journal(self) -> tuple[JournalEntry, ...]:
        """The fills applied since the last reset, in order."""
        return tuple(self._journal)

    def holds(self, exec_id: str) -> bool:
        """Whether a fill with this exec id's prefix is in the journal."""
        prefix = exec_prefix(exec_id)
        return any(exec_prefix(entry.exec_id) == prefix for entry in self._journal)

    def apply(
        self, quantity: Number, price: Number, commission: Number = 0, exec_id: str = ""
    ) -> FillEffect:
        """Apply a fill (signed ``quantity``) and journal it."""
        entry = JournalEntry(
            exec_id, as_decimal(quantity), as_decimal(price), as_decimal(commission)
        )
        effect = apply_fill(
            self._state, entry.quantity, entry.price, entry.commission, self._multiplier
        )
        self._journal.append(entry)
        self._state = effect.state
        return effect

    def correct(
        self, exec_id: str, quantity: Number, price: Number, commission: Number = 0
    ) -> Decimal | None:
        """Replace the journaled fill with ``exec_id``'s prefix and replay.

        Returns the change of the realized P&L, or ``None`` when no fill with
        that prefix is in the journal (it was before the last reset: the
        broker's figures already hold it).
        """
        prefix = exec_prefix(exec_id)
        for index, entry in enumerate(self._journal):
            if exec_prefix(entry.exec_id) == prefix:
                self._journal[index] = JournalEntry(
                    exec_id, as_decimal(quantity), as_decimal(price), as_decimal(commission)
                )
                return self._replay()
        return None

    def set_commission(self, exec_id: str, commission: Number) -> Decimal | None:
        """Give a journaled fill its (late) commission and replay; ``None`` if not journaled."""
        for index, entry in enumerate(self._journal):
            if entry.exec_id == exec_id:
                self._journal[index] = JournalEntry(
                    exec_id, entry.quantity, entry.price, as_decimal(commission)
                )
                return self._replay()
        return None

    def reset(
        self, quantity: Number, avg_cost: Number, avg_price: Number | None = None
    ) -> PositionState:
        """Set the position to the broker's figures; realized P&L and commissions stay.

        ``avg_cost`` is TWS's (per unit times the multiplier, commissions
        included). Without ``avg_price`` it is derived as ``avg_cost / multiplier``
        (so it includes the commission). Starts a new journal.
        """
        q = as_decimal(quantity)
        cost = as_decimal(avg_cost) if q != 0 else _ZERO
        with decimal.localcontext(_CONTEXT):
            if q == 0:
                price = _ZERO
            elif avg_price is not None:
                price = as_decimal(avg_price)
            else:
                price = cost / self._multiplier
        current = self._state
        self._base = PositionState(q, cost, price, current.realized, current.commission)
        self._state = self._base
        self._journal.clear()
        return self._state

    def _replay(self) -> Decimal:
        before = self._state.realized
        state = self._base
        for entry in self._journal:
            state = apply_fill(
                state, entry.quantity, entry.price, entry.commission, self._multiplier
            ).state
        self._state = state
        with decimal.localcontext(_CONTEXT):
            return state.realized - before

    def __repr__(self) -> str:
        s = self._state
        return (
            f"<PositionLedger quantity={s.quantity} avg_cost={s.avg_cost} "
            f"realized={s.realized} fills={len(self._journal)}>"
        )
