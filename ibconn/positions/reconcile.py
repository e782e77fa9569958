"""Reconciliation: compare ibconn's positions with the broker's and correct what differs.

A quantity that differs from the broker's (beyond the executions still on
their way), or an average cost beyond the tolerance, is set to the broker's
figures, published with ``source=RECONCILED`` and raised as a ``positions``
alert carrying both figures and the executions that explain the difference
(those TWS reported that ibconn had not applied).

:func:`judge` is the decision, a pure function; :class:`Reconciler` applies it
to every position (synchronously: nothing awaits between reading and
correcting); :func:`request_positions` asks TWS for its positions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal

from ib_async import IB
from ib_async import Fill as IBFill
from ib_async import Position as IBPosition

from ibconn.core.codes import Severity
from ibconn.core.numbers import number_or_none
from ibconn.errors import ConnectionLostError, RequestTimeoutError
from ibconn.orders.convert import to_fill
from ibconn.orders.fills import exec_revision
from ibconn.orders.models import exec_prefix
from ibconn.positions.books import BookKey, Books
from ibconn.positions.ingest import ExecutionLog
from ibconn.positions.models import MismatchKind, PositionMismatch, PositionSource
from ibconn.positions.pnl import as_decimal
from ibconn.positions.ports import AlertSink, PositionSettings

__all__ = [
    "PENDING_GRACE",
    "QUANTITY_EPSILON",
    "Reconciler",
    "judge",
    "latest_revisions",
    "request_positions",
    "signed_quantity",
]

PENDING_GRACE = 5.0
"""Seconds an execution TWS reported may stay unapplied (the order service holds a fill
up to a second for its commission) before reconciliation stops waiting for it."""

QUANTITY_EPSILON = Decimal("1e-9")
"""Quantities closer than this agree."""


def judge(
    ours: Decimal,
    ours_avg_cost: Decimal | None,
    broker: Decimal,
    broker_avg_cost: float | None,
    *,
    in_flight: Decimal,
    waiting: bool,
    tolerance: Decimal,
) -> MismatchKind | None:
    """What is wrong with a position, or ``None`` when it agrees with the broker's.

    ``ours_avg_cost`` is ``None`` when ibconn has no book; ``in_flight`` is the
    signed quantity of the executions still waiting to be applied (``waiting``:
    whether there are any; their average cost is not known, so it is not judged).
    ``tolerance`` is relative to the broker's average cost.
    """
    if abs(ours + in_flight - broker) > QUANTITY_EPSILON:
        return MismatchKind.QUANTITY
    if waiting or ours_avg_cost is None or broker == 0 or broker_avg_cost is None:
        return None
    broker_dec = as_decimal(broker_avg_cost)
    if abs(ours_avg_cost - broker_dec) <= tolerance * abs(broker_dec):
        return None
    return MismatchKind.AVG_COST


def signed_quantity(ib_fill: IBFill) -> Decimal:
    """An execution's quantity, positive for a buy, negative for a sale."""
    execution = ib_fill.execution
    quantity = as_decimal(number_or_none(execution.shares) or 0.0)
    return quantity if execution.side.upper() in ("BOT", "BUY") else -quantity


def latest_revisions(fills: Iterable[IBFill]) -> list[IBFill]:
    """One fill per execution: its latest revision (a correction replaces its original)."""
    by_prefix: dict[str, IBFill] = {}
    for ib_fill in fills:
        exec_id = ib_fill.execution.execId
        prefix = exec_prefix(exec_id)
        current = by_prefix.get(prefix)
        if current is None or exec_revision(exec_id) > exec_revision(current.execution.execId):
            by_prefix[prefix] = ib_fill
    return sorted(by_prefix.values(), key=lambda f: f.execution.execId)


async def request_positions(ib: IB, timeout: float) -> list[IBPosition]:
    """The broker's positions now (``reqPositions``), with ibconn's errors."""
    try:
        async with asyncio.timeout(timeout):
            return await ib.reqPositionsAsync()
    except TimeoutError as exc:
        raise RequestTimeoutError(f"TWS did not answer reqPositions within {timeout} s") from exc
    except ConnectionError as exc:
        raise ConnectionLostError("the link to TWS dropped while reconciling positions") from exc


class Reconciler:
    """Compares every position with the broker's, corrects, publishes and alerts."""

    def __init__(
        self, books: Books, log: ExecutionLog, alerts: AlertSink, settings: PositionSettings
    ) -> None:
        self._books = books
        self._log = log
        self._alerts = alerts
        self._settings = settings
        self.runs = 0
        """Comparisons made."""
        self.mismatches = 0
        """Positions corrected."""

    def compare(
        self,
        executions: Mapping[str, IBFill],
        broker_positions: Iterable[IBPosition],
        trigger: str,
        *,
        settled: set[str] | None,
        now: float | None = None,
    ) -> list[PositionMismatch]:
        """Compare every position with the broker's and correct what differs.

        ``executions`` are today's executions TWS reported, by exec id.
        ``settled`` (timer and manual runs): the exec ids known when reqPositions
        was sent; a position with an execution that arrived after that is left for
        the next run: the broker's answer may predate it. ``now`` is a
        ``time.monotonic()`` reading (default: now).
        """
        self.runs += 1
        broker: dict[BookKey, IBPosition] = {}
        for pos in broker_positions:
            broker[(pos.account, pos.contract.conId)] = pos
        now = time.monotonic() if now is None else now
        unapplied: dict[BookKey, list[IBFill]] = {}
        late: set[BookKey] = set()
        for exec_id, ib_fill in list(executions.items()):
            key = (ib_fill.execution.acctNumber, ib_fill.contract.conId)
            if settled is not None and exec_id not in settled:
                late.add(key)
            prefix = exec_prefix(exec_id)
            if self._log.seen(prefix) is not None:
                continue
            unapplied.setdefault(key, []).append(ib_fill)
            self._log.waiting(prefix, now)
        keys = set(broker) | set(unapplied) | self._books.open_keys()
        tolerance = as_decimal(self._settings.reconcile_avg_cost_tolerance)
        found: list[PositionMismatch] = []
        for key in sorted(keys):
            if key in late:
                continue
            mismatch = self._compare_one(
                key,
                broker.get(key),
                unapplied=latest_revisions(unapplied.get(key, [])),
                trigger=trigger,
                tolerance=tolerance,
                now=now,
            )
            if mismatch is not None:
                found.append(mismatch)
        return found

    def _compare_one(
        self,
        key: BookKey,
        broker: IBPosition | None,
        *,
        unapplied: list[IBFill],
        trigger: str,
        tolerance: Decimal,
        now: float,
    ) -> PositionMismatch | None:
        book = self._books.get(key)
        ours = book.quantity if book is not None else Decimal(0)
        broker_q = as_decimal(number_or_none(broker.position) or 0.0) if broker else Decimal(0)
        broker_avg = number_or_none(broker.avgCost) if broker is not None else None
        waiting = [
            f
            for f in unapplied
            if self._log.waited(exec_prefix(f.execution.execId), now) < PENDING_GRACE
        ]
        kind = judge(
            ours,
            book.ledger.state.avg_cost if book is not None else None,
            broker_q,
            broker_avg,
            in_flight=sum((signed_quantity(f) for f in waiting), Decimal(0)),
            waiting=bool(waiting),
            tolerance=tolerance,
        )
        if kind is None:
            return None
        if book is None:
            contract = broker.contract if broker is not None else unapplied[0].contract
            book = self._books.new_book(key[0], contract)
        fills = tuple(to_fill(f, None) for f in unapplied)
        explained = sum((signed_quantity(f) for f in unapplied), Decimal(0))
        state = book.ledger.state
        mismatch = PositionMismatch(
            account=key[0],
            con_id=key[1],
            symbol=book.symbol,
            kind=kind,
            ibconn_quantity=float(state.quantity),
            broker_quantity=float(broker_q),
            ibconn_avg_cost=float(state.avg_cost) if state.quantity != 0 else None,
            broker_avg_cost=broker_avg if broker_q != 0 else None,
            fills=fills,
            explained_quantity=float(explained) if kind is MismatchKind.QUANTITY else 0.0,
            trigger=trigger,
        )
        if kind is MismatchKind.AVG_COST:
            book.ledger.reset(broker_q, broker_avg or 0.0, state.avg_price)
        else:
            book.ledger.reset(broker_q, broker_avg or 0.0)
        for ib_fill in unapplied:  # the broker's figures hold them now
            self._log.absorb(ib_fill.execution.execId)
        self.mismatches += 1
        book.mismatch = mismatch
        book.time = mismatch.time
        self._books.publish(book, PositionSource.RECONCILED)
        severity = Severity.ERROR if kind is MismatchKind.QUANTITY else Severity.WARNING
        self._alerts.publish(
            severity,
            "positions",
            f"position mismatch ({trigger}): {mismatch}; set to the broker's figures",
            mismatch=mismatch,
            account=mismatch.account,
            con_id=mismatch.con_id,
            symbol=mismatch.symbol,
            ibconn_quantity=mismatch.ibconn_quantity,
            broker_quantity=mismatch.broker_quantity,
            ibconn_avg_cost=mismatch.ibconn_avg_cost,
            broker_avg_cost=mismatch.broker_avg_cost,
            fills=mismatch.fills,
        )
        return mismatch
