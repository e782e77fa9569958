"""The position service: positions and P&L from fills, reconciled with the broker.

:class:`PositionService` keeps one :class:`~ibconn.positions.pnl.PositionLedger` per
``(account, con_id)`` (in :class:`~ibconn.positions.books.Books`):

* **At the first connect** it takes TWS's positions (``ib.positions()``,
  fetched by ib_async's connect) as they are; the day's executions ib_async
  fetched with them are already in those figures, so they are never applied.
* **Fills** come from the order service's fill stream (each exactly once,
  also those missed during a disconnect, delivered after the resync); each
  moves its position through :func:`ibconn.positions.pnl.apply_fill`
  (:mod:`ibconn.positions.ingest`). An execution correction re-prices its fill.
* **Marks** (:mod:`ibconn.positions.marks`): a position's market price is the
  connector's own market data (mid of bid and ask) while a market data line of
  the instrument is subscribed, else the last price of TWS's portfolio updates.
* **Reconciliation** (:mod:`ibconn.positions.reconcile`) on every connect and
  reconnect (``on_session_ready``, against the positions ib_async just
  fetched), every ``reconcile_interval`` seconds (``reqPositions``) and on
  demand (:meth:`PositionService.reconcile`).
* **Account** (:mod:`ibconn.positions.account`): ``reqPnL`` per managed account,
  kept live and re-issued after every reconnect; the account summary; what-if
  previews (:mod:`ibconn.positions.what_if`).

This module is the facade and the session hooks; it wires those parts together.
See ``docs/positions.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from ib_async import IB, Contract, PortfolioItem, Ticker
from ib_async import PnL as IBPnL

from ibconn.connection.session import ConnectionState, Service, Session, move_handlers
from ibconn.contracts.resolver import ContractLike
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.core.streams import Subscription
from ibconn.core.tasks import ServiceTasks
from ibconn.errors import (
    ConnectionLostError,
    IBConnError,
    InvalidInputError,
    NotConnectedError,
)
from ibconn.orders.models import Fill, OrderSpec
from ibconn.positions.account import AccountFigures
from ibconn.positions.books import Books
from ibconn.positions.ingest import ExecutionLog, FillIngest
from ibconn.positions.marks import MarkBook
from ibconn.positions.models import (
    AccountPnL,
    AccountSummary,
    Position,
    PositionMismatch,
    WhatIfResult,
)
from ibconn.positions.ports import (
    AlertSink,
    ContractLookup,
    MarketDataSource,
    OrderSource,
    PositionSettings,
    SessionSource,
)
from ibconn.positions.reconcile import Reconciler, request_positions
from ibconn.positions.what_if import WhatIfPreview

__all__ = ["FILL_BUFFER", "PositionService", "PositionStatistics"]

_log = get_logger("positions")

FILL_BUFFER = 100_000
"""Fills the service itself may have unread (it reads them at once; a burst beyond
this makes it fall back to reconciliation)."""


@dataclass(frozen=True, slots=True)
class PositionStatistics:
    """Counters of the position service (``connector.position_service.statistics()``)."""

    positions: int
    """Positions known (flat ones included)."""
    fills_applied: int
    corrections: int
    reconciliations: int
    mismatches: int
    handler_errors: int


class PositionService(Service):
    """Positions, P&L and account figures (see the module docstring). ``order`` 30.

    It installs itself into nothing: :func:`ibconn.assembly.assemble` passes its
    collaborators and registers it with the supervisor. The orders' fill stream
    is opened when the first session starts (and kept from then on).
    """

    name = "positions"
    order = 30

    def __init__(
        self,
        supervisor: SessionSource,
        contracts: ContractLookup,
        settings: PositionSettings,
        alerts: AlertSink,
        orders: OrderSource,
        *,
        market_data: MarketDataSource | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._settings = settings
        self._alerts = alerts
        self._orders = orders
        self._marks = MarkBook(contracts, market_data)
        self._books = Books(contracts, self._marks)
        self._executions = ExecutionLog()
        self._accounts = AccountFigures(settings)
        self._ingest = FillIngest(
            self._books,
            self._executions,
            contracts,
            self._accounts.default_account,
            self._known_contract,
        )
        self._reconciler = Reconciler(self._books, self._executions, alerts, settings)
        self._what_if = WhatIfPreview(orders, settings, self._accounts, self._require_ib)
        self._fills: Subscription[Fill] | None = None  # opened by the first session
        self._tasks = ServiceTasks("positions")
        self._consumer: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._mark_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._installed: IB | None = None
        self._sessions = 0
        self._generation = 0
        self._live = False
        self._lost_since_ready = True

    # -- public: positions ----------------------------------------------------------------

    def positions(
        self, account: str | None = None, *, include_flat: bool = False
    ) -> list[Position]:
        """Every position (of ``account`` when given), sorted by account and symbol.

        Flat positions (closed today, realized P&L kept) only with ``include_flat``.
        """
        return self._books.positions(account, include_flat=include_flat)

    def holdings(self) -> list[Position]:
        """Every position known, flat ones included (what the risk service reads).

        Fills already published are applied first, so the figures never lag the
        fill stream by the loop iteration its consumer task needs.
        """
        self._drain()
        return self.positions(include_flat=True)

    def position(
        self, instrument: ContractLike | int, account: str | None = None
    ) -> Position | None:
        """The position in ``instrument`` (a symbol, a contract or a conId), no round trip.

        ``None`` when ibconn never saw one. Without ``account``: the settings'
        account if it holds one, else the only account that does; raises
        :class:`InvalidInputError` when several accounts hold it.
        """
        books = self._books.match(instrument)
        if account is not None:
            books = [b for b in books if b.account == account]
        if not books:
            return None
        if len(books) > 1:
            preferred = [b for b in books if b.account == self._settings.account]
            if len(preferred) == 1:
                books = preferred
            else:
                held = [b for b in books if b.quantity != 0]
                if len({b.account for b in held}) == 1:
                    books = held[:1]
                else:
                    accounts = ", ".join(sorted({b.account for b in books}))
                    raise InvalidInputError(
                        f"{books[0].symbol} is held in several accounts ({accounts}); "
                        "pass account=... to choose one"
                    )
        book = books[0]
        return self._books.snapshot(book, book.source)

    def position_updates(
        self, capacity: int | None = None, *, account: str | None = None
    ) -> Subscription[Position]:
        """Every position change from now on (of ``account`` when given); never drops.

        A consumer more than ``capacity`` updates behind gets
        :class:`~ibconn.errors.StreamOverflowError`; :meth:`positions` stays readable.
        """
        if capacity is not None and capacity < 1:
            raise InvalidInputError(f"capacity must be at least 1, got {capacity}")
        return self._books.subscribe(account, capacity)

    async def reconcile(self) -> list[PositionMismatch]:
        """Compare every position with the broker's (``reqPositions``) now.

        Returns the mismatches found (each already corrected, published and
        alerted). Raises :class:`NotConnectedError` when not connected and
        :class:`RequestTimeoutError` when TWS does not answer in time.
        """
        return await self._reconcile_now("manual")

    def statistics(self) -> PositionStatistics:
        """Positions known, fills applied, corrections, reconciliations, mismatches."""
        return PositionStatistics(
            positions=len(self._books),
            fills_applied=self._ingest.fills_applied,
            corrections=self._ingest.corrections,
            reconciliations=self._reconciler.runs,
            mismatches=self._reconciler.mismatches,
            handler_errors=self._tasks.errors,
        )

    # -- public: account ------------------------------------------------------------------

    def account_pnl(self, account: str | None = None) -> AccountPnL | None:
        """The account's daily, unrealized and realized P&L from ``reqPnL`` (live).

        ``None`` until TWS sent the first figures.
        """
        return self._accounts.pnl(account)

    async def account_summary(self, account: str | None = None) -> AccountSummary:
        """Net liquidation, cash, buying power and margins of ``account`` (default: the
        settings' or the first managed account), in its base currency."""
        ib = self._require_ib("read the account summary")
        return await self._accounts.summary(ib, account)

    async def what_if(self, spec: OrderSpec, *, timeout: float | None = None) -> WhatIfResult:
        """TWS's margin and commission preview of ``spec``; the order is never placed.

        ``spec`` is validated like an order (:class:`InvalidInputError`); TWS
        refusing it raises :class:`OrderRejectedError`.
        """
        return await self._what_if.preview(spec, timeout=timeout)

    # -- Service hooks --------------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Take or reconcile the broker's positions, re-issue reqPnL, start the timer."""
        if self._fills is None:
            # The first session: the order service publishes no fill of earlier
            # executions at its first resync (the broker's positions hold them).
            self._fills = self._orders.fills(None, FILL_BUFFER)
        if self._installed is not ib:
            self._install(ib)
        first = self._sessions == 0
        same_socket = not first and not self._lost_since_ready
        if same_socket:
            # 1101 on the same socket: TWS may not have pushed what changed meanwhile
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._settings.resync_timeout / 2):
                    await ib.reqPositionsAsync()
        self._sessions += 1
        self._generation = session.generation
        self._accounts.accounts = session.accounts
        # From here on nothing awaits: the comparison sees one consistent state.
        self._drain()
        if first:
            self._ingest.seed(ib.fills(), ib.positions())
        else:
            self._reconciler.compare(ib.wrapper.fills, ib.positions(), "reconnect", settled=None)
        for item in ib.portfolio():
            self._marks.on_portfolio(item)
        self._accounts.subscribe_pnl(ib, session)
        self._lost_since_ready = False
        self._live = True
        self._start_tasks()

    async def on_session_lost(self, reason: str) -> None:
        """Stop comparing until the next session; positions stay readable."""
        self._live = False
        self._lost_since_ready = True

    def close(self) -> None:
        """Stop the tasks and end every ``position_updates()`` stream (connector closed)."""
        self._live = False
        self._lost_since_ready = True  # a later connect() is a new socket
        tasks = self._tasks
        tasks.close()
        self._tasks = ServiceTasks("positions")  # a later connect() starts them again
        self._tasks.errors = tasks.errors
        self._consumer = self._timer = self._mark_task = None
        self._drain()  # the order service's last fills (its streams end with the connector)
        if self._fills is not None:
            # Follow on at once: a later connect() resyncs orders (which publishes
            # the fills missed meanwhile) before this service's session hook runs.
            self._fills = self._orders.fills(None, FILL_BUFFER)
        self._books.close()  # a later connect() gets working streams again

    # -- sessions -------------------------------------------------------------------------

    def _install(self, ib: IB) -> None:
        move_handlers(
            self._installed,
            ib,
            [
                ("updatePortfolioEvent", self._on_portfolio_event),
                ("pnlEvent", self._on_pnl_event),
                ("pendingTickersEvent", self._on_tickers_event),
            ],
        )
        self._installed = ib

    def _start_tasks(self) -> None:
        if self._consumer is None or self._consumer.done():
            self._consumer = self._tasks.spawn(
                self._tasks.follow(self._fill_stream, self._apply, self._fell_behind),
                "ibconn-positions-fills",
            )
        if self._timer is None or self._timer.done():
            self._timer = self._tasks.spawn(self._run_timer(), "ibconn-positions-reconcile")

    def _require_ib(self, what: str) -> IB:
        state = self._supervisor.state
        if state is not ConnectionState.CONNECTED or not self._live:
            raise NotConnectedError(f"cannot {what}: the connector is {state.value}")
        return self._supervisor.ib

    # -- fills ----------------------------------------------------------------------------

    def _fill_stream(self) -> Subscription[Fill]:
        if self._fills is None:  # pragma: no cover - the first session opened it
            self._fills = self._orders.fills(None, FILL_BUFFER)
        return self._fills

    def _fell_behind(self) -> None:
        """More fills than the buffer in one burst: follow again; the fills lost here
        are TWS executions ibconn did not apply, so reconciliation finds them."""
        self._fills = self._orders.fills(None, FILL_BUFFER)
        self._alerts.publish(
            Severity.WARNING,
            "positions",
            "the position service fell behind the fill stream; positions are "
            "reconciled with the broker",
        )
        if self._live:
            self._tasks.spawn(self._reconcile_quietly("overflow"), "ibconn-positions-overflow")

    def _drain(self) -> None:
        """Apply every fill the order service has published and this service not read yet."""
        if self._fills is None:
            return
        while (fill := self._fills.get_nowait()) is not None:
            self._apply(fill)

    def _apply(self, fill: Fill) -> None:
        # one bad fill must not stop the others
        self._tasks.guard(f"fill {fill.exec_id}", lambda: self._ingest.apply(fill))

    def _known_contract(self, fill: Fill) -> Contract | None:
        """The contract of a fill's conId as ib_async knows it (its executions, positions)."""
        ib = self._installed
        if ib is None:
            return None
        known = ib.wrapper.fills.get(fill.exec_id)
        if known is not None and known.contract.conId == fill.con_id:
            return known.contract
        for pos in ib.positions():
            if pos.contract.conId == fill.con_id:
                return pos.contract
        return None

    # -- marks and account P&L ------------------------------------------------------------

    def _on_portfolio_event(self, item: PortfolioItem) -> None:
        self._tasks.guard("portfolio", lambda: self._on_portfolio(item))

    def _on_portfolio(self, item: PortfolioItem) -> None:
        if self._marks.on_portfolio(item):
            self._books.mark_changed(item.contract.conId)

    def _on_tickers_event(self, tickers: Iterable[Ticker]) -> None:
        if self._marks.note_tickers(tickers, self._books.held) and (
            self._mark_task is None or self._mark_task.done()
        ):
            self._mark_task = self._tasks.spawn(
                self._marks.refresh(self._books.mark_changed), "ibconn-positions-marks"
            )

    def _on_pnl_event(self, pnl: IBPnL) -> None:
        self._tasks.guard("pnl", lambda: self._accounts.on_pnl(pnl, self._installed))

    # -- reconciliation -------------------------------------------------------------------

    async def _run_timer(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reconcile_interval)
            if not self._live or self._supervisor.state is not ConnectionState.CONNECTED:
                continue
            try:
                await self._reconcile_now("timer")
            except (IBConnError, ConnectionError) as exc:
                _log.info("timed reconciliation skipped: {}", exc)

    async def _reconcile_quietly(self, trigger: str) -> None:
        with contextlib.suppress(IBConnError, ConnectionError):
            await self._reconcile_now(trigger)

    async def _reconcile_now(self, trigger: str) -> list[PositionMismatch]:
        async with self._lock:
            ib = self._require_ib("reconcile positions")
            generation = self._generation
            settled = set(ib.wrapper.fills)  # executions known before the request left
            broker = await request_positions(ib, self._settings.resync_timeout)
            if generation != self._generation or not self._live:
                raise ConnectionLostError("the session changed while reconciling positions")
            self._drain()
            return self._reconciler.compare(ib.wrapper.fills, broker, trigger, settled=settled)

    def __repr__(self) -> str:
        held = sum(1 for b in self._books if b.quantity != 0)
        return (
            f"<PositionService positions={held} fills={self._ingest.fills_applied} "
            f"reconciliations={self._reconciler.runs} mismatches={self._reconciler.mismatches}>"
        )
