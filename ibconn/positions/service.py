"""The position service: positions and P&L from fills, reconciled with the broker.

:class:`PositionService` keeps one :class:`~ibconn.positions.pnl.PositionLedger` per
``(account, con_id)``:

* **At the first connect** it takes TWS's positions (``ib.positions()``,
  fetched by ib_async's connect) as they are; the day's executions ib_async
  fetched with them are already in those figures, so they are never applied.
* **Fills** come from the order service's fill stream (each exactly once,
  also those missed during a disconnect, delivered after the resync); each
  moves its position through :func:`ibconn.positions.pnl.apply_fill`. An execution
  correction re-prices its fill (the ledger replays).
* **Marks**: a position's market price is the connector's own market data
  (mid of bid and ask) while a market data line of the instrument is
  subscribed, else the last price of TWS's portfolio updates.
* **Reconciliation** on every connect and reconnect (``on_session_ready``,
  against the positions ib_async just fetched), every ``reconcile_interval``
  seconds (``reqPositions``) and on demand (:meth:`PositionService.reconcile`).
  A quantity that differs from the broker's, or an average cost beyond
  ``reconcile_avg_cost_tolerance``, is set to the broker's figures, published
  on ``position_updates()`` with ``source=RECONCILED`` and raised as a
  ``positions`` alert carrying both figures and the executions that explain
  the difference (those TWS reported that ibconn had not applied).
* **Account**: ``reqPnL`` per managed account, kept live and re-issued after
  every reconnect; the account summary; what-if previews.

See ``docs/positions.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ib_async import IB, Contract, Order, OrderState, PortfolioItem, Ticker
from ib_async import Fill as IBFill
from ib_async import PnL as IBPnL
from ib_async import Position as IBPosition

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import ConnectionState, Service, Session, move_handlers
from ibconn.contracts.resolver import ContractLike, ContractResolver, to_contract
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity, classify
from ibconn.core.logs import get_logger
from ibconn.core.streams import FilteredFanout, Subscription
from ibconn.errors import (
    ConnectionLostError,
    IBConnError,
    InvalidInputError,
    NotConnectedError,
    OrderRejectedError,
    RequestTimeoutError,
    StreamOverflowError,
)
from ibconn.orders.convert import apply_spec, to_fill
from ibconn.orders.fills import exec_revision
from ibconn.orders.models import Fill, OrderSpec, exec_prefix
from ibconn.orders.service import OrderService
from ibconn.positions.models import (
    AccountPnL,
    AccountSummary,
    MarkSource,
    MismatchKind,
    Position,
    PositionMismatch,
    PositionSource,
    WhatIfResult,
    clean_number,
)
from ibconn.positions.pnl import PositionLedger, as_decimal
from ibconn.wire.ib_compat import end_request

if TYPE_CHECKING:
    from ibconn.connection.supervisor import Supervisor
    from ibconn.market_data.service import MarketDataService

__all__ = ["PositionService", "PositionStatistics"]

_log = get_logger("positions")

STREAM_CAPACITY = 10_000
"""Updates a consumer of ``position_updates()`` may fall behind before it gets
:class:`~ibconn.errors.StreamOverflowError`."""

_FILL_BUFFER = 100_000
"""Fills the service itself may have unread (it reads them at once; a burst beyond
this makes it fall back to reconciliation)."""

MARK_PUBLISH_INTERVAL = 1.0
"""At most one ``MARK`` update per position per this many seconds (the latest mark wins)."""

PENDING_GRACE = 5.0
"""Seconds an execution TWS reported may stay unapplied (the order service holds a fill
up to a second for its commission) before reconciliation stops waiting for it."""

_MAX_PNL_ACCOUNTS = 50
_QTY_EPS = Decimal("1e-9")


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


class _Book:
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

    def __init__(
        self,
        account: str,
        contract: Contract,
        multiplier: float,
    ) -> None:
        self.account = account
        self.con_id = contract.conId
        self.contract = contract
        self.symbol = _display(contract)
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
        return self.ledger.state.quantity


def _position_updates() -> FilteredFanout[Position]:
    return FilteredFanout("position_updates", STREAM_CAPACITY)


class PositionService(Service):
    """Positions, P&L and account figures (see the module docstring). ``order`` 30."""

    name = "positions"
    order = 30

    def __init__(
        self,
        supervisor: Supervisor,
        contracts: ContractResolver,
        settings: ConnectorSettings,
        alerts: AlertBus,
        orders: OrderService,
        *,
        market_data: MarketDataService | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._contracts = contracts
        self._settings = settings
        self._alerts = alerts
        self._orders = orders
        self._market_data = market_data
        self._books: dict[tuple[str, int], _Book] = {}
        self._seen: dict[str, str] = {}  # exec prefix -> exec id applied or absorbed
        self._pending_since: dict[str, float] = {}  # exec prefix -> first seen unapplied
        self._updates = _position_updates()
        self._fills: Subscription[Fill] = orders.fills(None, _FILL_BUFFER)
        self._portfolio_marks: dict[int, tuple[float, datetime]] = {}
        self._md_marks: dict[int, tuple[float, datetime]] = {}
        self._dirty_marks: set[int] = set()
        self._held: set[int] = set()  # con_ids of open positions (the ticker filter)
        self._pnl: dict[str, AccountPnL] = {}
        self._currencies: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumer: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._mark_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._installed: IB | None = None
        self._accounts: tuple[str, ...] = ()
        self._sessions = 0
        self._generation = 0
        self._live = False
        self._lost_since_ready = True
        self._fills_applied = 0
        self._corrections = 0
        self._reconciliations = 0
        self._mismatches = 0
        self._handler_errors = 0

    # -- public: positions ----------------------------------------------------------------

    def positions(
        self, account: str | None = None, *, include_flat: bool = False
    ) -> list[Position]:
        """Every position (of ``account`` when given), sorted by account and symbol.

        Flat positions (closed today, realized P&L kept) only with ``include_flat``.
        """
        books = [
            book
            for book in self._books.values()
            if (account is None or book.account == account) and (include_flat or book.quantity != 0)
        ]
        books.sort(key=lambda b: (b.account, b.symbol, b.con_id))
        active = self._md_con_ids() if self._md_marks else set()
        return [self._snapshot(book, book.source, active) for book in books]

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
        books = self._match(instrument)
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
        return self._snapshot(book, book.source)

    def position_updates(
        self, capacity: int | None = None, *, account: str | None = None
    ) -> Subscription[Position]:
        """Every position change from now on (of ``account`` when given); never drops.

        A consumer more than ``capacity`` updates behind gets
        :class:`~ibconn.errors.StreamOverflowError`; :meth:`positions` stays readable.
        """
        if capacity is not None and capacity < 1:
            raise InvalidInputError(f"capacity must be at least 1, got {capacity}")
        if account is None:
            return self._updates.subscribe(None, capacity)
        return self._updates.subscribe(lambda p: p.account == account, capacity)

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
            fills_applied=self._fills_applied,
            corrections=self._corrections,
            reconciliations=self._reconciliations,
            mismatches=self._mismatches,
            handler_errors=self._handler_errors,
        )

    # -- public: account ------------------------------------------------------------------

    def account_pnl(self, account: str | None = None) -> AccountPnL | None:
        """The account's daily, unrealized and realized P&L from ``reqPnL`` (live).

        ``None`` until TWS sent the first figures.
        """
        return self._pnl.get(self._pick_account(account, strict=False))

    async def account_summary(self, account: str | None = None) -> AccountSummary:
        """Net liquidation, cash, buying power and margins of ``account`` (default: the
        settings' or the first managed account), in its base currency."""
        ib = self._require_ib("read the account summary")
        name = self._pick_account(account, strict=True)
        timeout = self._settings.resync_timeout
        try:
            async with asyncio.timeout(timeout):
                values = await ib.accountSummaryAsync(name)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"TWS did not answer the account summary request within {timeout} s"
            ) from exc
        except ConnectionError as exc:
            raise ConnectionLostError(
                "the link to TWS dropped while reading the account summary"
            ) from exc
        return _summary(name, [(v.tag, v.value, v.currency) for v in values])

    async def what_if(self, spec: OrderSpec, *, timeout: float | None = None) -> WhatIfResult:
        """TWS's margin and commission preview of ``spec``; the order is never placed.

        ``spec`` is validated like an order (:class:`InvalidInputError`); TWS
        refusing it raises :class:`OrderRejectedError`.
        """
        if not isinstance(spec, OrderSpec):
            raise InvalidInputError(f"what_if() takes an OrderSpec, got {type(spec).__name__}")
        self._require_ib("preview an order")
        orders = self._orders
        resolved = await orders.resolve(spec.symbol)
        checked = await orders.check(spec, resolved)
        ib = self._require_ib("preview an order")
        order = Order()
        apply_spec(order, checked)
        order.whatIf = True
        order.transmit = True
        account = checked.account or self._settings.account or self._default_account()
        if account:
            order.account = account
        loop = asyncio.get_running_loop()
        refused: asyncio.Future[tuple[int, str]] = loop.create_future()
        req_id = ib.client.getReqId()

        def on_error(error_req_id: int, code: int, message: str, contract: object) -> None:
            if error_req_id != req_id or refused.done():
                return
            info = classify(code, message, order_live=False)
            if info.severity.level_no >= Severity.ERROR.level_no:
                refused.set_result((code, message))

        answer: asyncio.Future[Any] = ib.wrapper.startReq(req_id, resolved.contract)
        ib.errorEvent += on_error
        limit = timeout if timeout is not None else self._settings.order_ack_timeout
        try:
            ib.client.placeOrder(req_id, resolved.contract, order)
            async with asyncio.timeout(limit):
                await asyncio.wait({answer, refused}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"TWS did not answer the what-if preview of {resolved.display_name} "
                f"within {limit} s"
            ) from exc
        except ConnectionError as exc:
            raise ConnectionLostError(
                "the what-if preview was not answered: the link to TWS is down"
            ) from exc
        finally:
            ib.errorEvent -= on_error
            if not answer.done():
                end_request(ib, req_id)
            if answer.done() and not answer.cancelled():
                answer.exception()  # retrieved: reported below if it matters
        if refused.done():
            code, message = refused.result()
            raise OrderRejectedError(
                f"TWS refused the what-if preview of {checked.action.value} "
                f"{checked.quantity:g} {resolved.display_name}: {code} {message}",
                code=code,
                text=message,
            )
        error = answer.exception()
        if isinstance(error, ConnectionError):
            raise ConnectionLostError(
                "the what-if preview was not answered: the link to TWS dropped"
            ) from error
        state = answer.result() if error is None else None
        if not isinstance(state, OrderState):
            raise OrderRejectedError(
                f"TWS gave no what-if preview for {checked.action.value} {checked.quantity:g} "
                f"{resolved.display_name}",
                code=0,
                text="no preview",
            )
        return WhatIfResult(
            account=account,
            symbol=resolved.display_name,
            con_id=resolved.con_id,
            action=checked.action,
            quantity=checked.quantity,
            init_margin_before=clean_number(state.initMarginBefore),
            init_margin_change=clean_number(state.initMarginChange),
            init_margin_after=clean_number(state.initMarginAfter),
            maint_margin_before=clean_number(state.maintMarginBefore),
            maint_margin_change=clean_number(state.maintMarginChange),
            maint_margin_after=clean_number(state.maintMarginAfter),
            equity_with_loan_before=clean_number(state.equityWithLoanBefore),
            equity_with_loan_change=clean_number(state.equityWithLoanChange),
            equity_with_loan_after=clean_number(state.equityWithLoanAfter),
            commission=clean_number(state.commission),
            min_commission=clean_number(state.minCommission),
            max_commission=clean_number(state.maxCommission),
            commission_currency=state.commissionCurrency or None,
            currency=self._base_currency(ib, account) if account else None,
            warning=state.warningText or None,
        )

    # -- Service hooks --------------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Take or reconcile the broker's positions, re-issue reqPnL, start the timer."""
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
        self._accounts = session.accounts
        # From here on nothing awaits: the comparison sees one consistent state.
        self._drain()
        if first:
            self._seed(ib)
        else:
            self._compare(ib, ib.positions(), "reconnect", settled=None)
        for item in ib.portfolio():
            self._on_portfolio(item, announce=False)
        self._subscribe_pnl(ib, session)
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
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._consumer = self._timer = self._mark_task = None
        for book in self._books.values():
            if book.mark_handle is not None:
                book.mark_handle.cancel()
                book.mark_handle = None
        self._drain()  # the order service's last fills (its streams end with the connector)
        self._fills = self._orders.fills(None, _FILL_BUFFER)
        self._updates.close()
        self._updates = _position_updates()  # a later connect() gets working streams again

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
            self._consumer = self._spawn(self._consume(), "ibconn-positions-fills")
        if self._timer is None or self._timer.done():
            self._timer = self._spawn(self._run_timer(), "ibconn-positions-reconcile")

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._handler_errors += 1
            _log.opt(exception=exc).error("positions task {} failed: {!r}", task.get_name(), exc)

    def _seed(self, ib: IB) -> None:
        """The first session: the broker's positions as they are; today's executions are in
        them already, so they are marked as absorbed, never applied."""
        for ib_fill in ib.fills():
            execution = ib_fill.execution
            if execution.execId:
                self._seen[exec_prefix(execution.execId)] = _latest(
                    self._seen.get(exec_prefix(execution.execId)), execution.execId
                )
        for pos in ib.positions():
            key = (pos.account, pos.contract.conId)
            quantity = clean_number(pos.position) or 0.0
            book = self._books.get(key)
            if book is None:
                if quantity == 0:
                    continue
                book = self._new_book(pos.account, pos.contract)
            book.ledger.reset(quantity, clean_number(pos.avgCost) or 0.0)
            book.time = datetime.now(UTC)
            self._publish(book, PositionSource.BROKER)

    def _subscribe_pnl(self, ib: IB, session: Session) -> None:
        for account in session.accounts[:_MAX_PNL_ACCOUNTS]:
            try:
                if (account, "") in ib.wrapper.pnlKey2ReqId:
                    if not session.data_lost:
                        continue
                    ib.cancelPnL(account)
                ib.reqPnL(account)
            except (ConnectionError, AssertionError) as exc:
                _log.warning("reqPnL for {} failed: {!r}", account, exc)

    # -- fills ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            try:
                async for fill in self._fills:
                    self._apply_guarded(fill)
                return  # the order service closed its streams
            except StreamOverflowError:
                # More fills than the buffer in one burst: follow again; the fills lost
                # here are TWS executions ibconn did not apply, so reconciliation finds them.
                self._fills = self._orders.fills(None, _FILL_BUFFER)
                self._alerts.publish(
                    Severity.WARNING,
                    "positions",
                    "the position service fell behind the fill stream; positions are "
                    "reconciled with the broker",
                )
                if self._live:
                    with contextlib.suppress(IBConnError, ConnectionError):
                        await self._reconcile_now("overflow")

    def _drain(self) -> None:
        """Apply every fill the order service has published and this service not read yet."""
        while (fill := self._fills.get_nowait()) is not None:
            self._apply_guarded(fill)

    def _apply_guarded(self, fill: Fill) -> None:
        try:
            self._on_fill(fill)
        except Exception as exc:  # one bad fill must not stop the others
            self._handler_errors += 1
            _log.opt(exception=exc).error("positions: fill {} raised {!r}", fill.exec_id, exc)

    def _on_fill(self, fill: Fill) -> None:
        prefix = fill.exec_prefix
        seen = self._seen.get(prefix)
        if seen == fill.exec_id:
            return
        key = (fill.account or self._default_account(), fill.con_id)
        book = self._books.get(key)
        if seen is not None:  # a correction of a fill applied or absorbed earlier
            if exec_revision(fill.exec_id) <= exec_revision(seen):
                return
            self._seen[prefix] = fill.exec_id
            if book is None:
                return
            delta = book.ledger.correct(
                fill.exec_id, fill.signed_quantity, fill.price, fill.commission or 0.0
            )
            if delta is None:
                return  # absorbed into the broker's figures before: nothing to re-price
            self._corrections += 1
            book.fill = fill
            book.time = fill.time
            self._publish(book, PositionSource.CORRECTION)
            return
        self._seen[prefix] = fill.exec_id
        self._pending_since.pop(prefix, None)
        if book is None:
            book = self._new_book(key[0], self._contract_for_fill(fill))
        book.ledger.apply(fill.signed_quantity, fill.price, fill.commission or 0.0, fill.exec_id)
        self._fills_applied += 1
        book.fill = fill
        book.time = fill.time
        self._publish(book, PositionSource.FILL)

    def _contract_for_fill(self, fill: Fill) -> Contract:
        resolved = self._contracts.by_con_id(fill.con_id)
        if resolved is not None:
            return resolved.contract
        ib = self._installed
        if ib is not None:
            known = ib.wrapper.fills.get(fill.exec_id)
            if known is not None and known.contract.conId == fill.con_id:
                return known.contract
            for pos in ib.positions():
                if pos.contract.conId == fill.con_id:
                    return pos.contract
        _log.warning(
            "contract of conId {} unknown: position in {} kept with multiplier 1",
            fill.con_id,
            fill.symbol,
        )
        return Contract(conId=fill.con_id, symbol=fill.symbol)

    def _new_book(self, account: str, contract: Contract) -> _Book:
        resolved = self._contracts.by_con_id(contract.conId)
        if resolved is not None:
            contract = resolved.contract
            multiplier = resolved.multiplier
        else:
            multiplier = _multiplier(contract)
        book = _Book(account, contract, multiplier)
        self._books[(account, contract.conId)] = book
        return book

    # -- marks ----------------------------------------------------------------------------

    def _on_portfolio_event(self, item: PortfolioItem) -> None:
        self._guard("portfolio", lambda: self._on_portfolio(item, announce=True))

    def _on_portfolio(self, item: PortfolioItem, *, announce: bool) -> None:
        price = clean_number(item.marketPrice)
        con_id = item.contract.conId
        if price is None or not con_id:
            return
        previous = self._portfolio_marks.get(con_id)
        self._portfolio_marks[con_id] = (price, datetime.now(UTC))
        if announce and (previous is None or previous[0] != price):
            self._mark_changed(con_id)

    def _on_tickers_event(self, tickers: Iterable[Ticker]) -> None:
        if self._market_data is None:
            return
        held = self._held
        if not held:
            return
        for ticker in tickers:
            contract = ticker.contract
            if contract is not None and contract.conId in held:
                self._dirty_marks.add(contract.conId)
        if self._dirty_marks and (self._mark_task is None or self._mark_task.done()):
            self._mark_task = self._spawn(self._refresh_marks(), "ibconn-positions-marks")

    async def _refresh_marks(self) -> None:
        """Mark held instruments from the connector's market data (its validated quotes)."""
        market_data = self._market_data
        while self._dirty_marks and market_data is not None:
            dirty, self._dirty_marks = self._dirty_marks, set()
            active = self._md_con_ids()
            for con_id in dirty:
                if con_id not in active:
                    continue
                resolved = self._contracts.by_con_id(con_id)
                if resolved is None:
                    continue
                try:
                    quote = await market_data.quote(resolved.contract, timeout=0.5)
                except (IBConnError, ConnectionError):
                    continue
                price = quote.mid
                if price is None:
                    continue
                previous = self._md_marks.get(con_id)
                self._md_marks[con_id] = (price, quote.time)
                if previous is None or previous[0] != price:
                    self._mark_changed(con_id)

    def _md_con_ids(self) -> set[int]:
        """Instruments whose market data line (``mkt``) is subscribed and fresh."""
        if self._market_data is None:
            return set()
        try:
            lines = self._market_data.lines()
        except Exception:  # the market data service is being closed
            return set()
        return {
            info.con_id for info in lines if info.kind == "mkt" and info.active and not info.stale
        }

    def _mark(
        self, con_id: int, md_active: set[int] | None
    ) -> tuple[float, datetime, MarkSource] | None:
        md = self._md_marks.get(con_id)
        if md is not None:
            active = md_active if md_active is not None else self._md_con_ids()
            if con_id in active:
                return md[0], md[1], MarkSource.MARKET_DATA
        pf = self._portfolio_marks.get(con_id)
        if pf is not None:
            return pf[0], pf[1], MarkSource.PORTFOLIO
        return None

    def _mark_changed(self, con_id: int) -> None:
        loop = asyncio.get_running_loop()
        for book in self._books.values():
            if book.con_id != con_id or book.quantity == 0 or book.mark_handle is not None:
                continue
            due = book.last_mark_pub + MARK_PUBLISH_INTERVAL
            if loop.time() >= due:
                self._publish_mark(book)
            else:
                book.mark_handle = loop.call_at(due, self._publish_mark, book)

    def _publish_mark(self, book: _Book) -> None:
        book.mark_handle = None
        book.last_mark_pub = asyncio.get_running_loop().time()
        mark = self._mark(book.con_id, None)
        if mark is None or mark[0] == book.published_mark or book.quantity == 0:
            return
        book.time = mark[1]
        self._publish(book, PositionSource.MARK)

    # -- account P&L ----------------------------------------------------------------------

    def _on_pnl_event(self, pnl: IBPnL) -> None:
        self._guard("pnl", lambda: self._on_pnl(pnl))

    def _on_pnl(self, pnl: IBPnL) -> None:
        if pnl.modelCode:
            return
        ib = self._installed
        self._pnl[pnl.account] = AccountPnL(
            account=pnl.account,
            daily_pnl=clean_number(pnl.dailyPnL),
            unrealized_pnl=clean_number(pnl.unrealizedPnL),
            realized_pnl=clean_number(pnl.realizedPnL),
            currency=self._base_currency(ib, pnl.account) if ib is not None else None,
        )

    def _base_currency(self, ib: IB, account: str) -> str | None:
        known = self._currencies.get(account)
        if known:
            return known
        for value in [*ib.accountValues(account), *ib.wrapper.acctSummary.values()]:
            if value.account == account and value.tag == "NetLiquidation" and value.currency:
                self._currencies[account] = value.currency
                return value.currency
        return None

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

    async def _reconcile_now(self, trigger: str) -> list[PositionMismatch]:
        async with self._lock:
            ib = self._require_ib("reconcile positions")
            generation = self._generation
            settled = set(ib.wrapper.fills)  # executions known before the request left
            timeout = self._settings.resync_timeout
            try:
                async with asyncio.timeout(timeout):
                    broker = await ib.reqPositionsAsync()
            except TimeoutError as exc:
                raise RequestTimeoutError(
                    f"TWS did not answer reqPositions within {timeout} s"
                ) from exc
            except ConnectionError as exc:
                raise ConnectionLostError(
                    "the link to TWS dropped while reconciling positions"
                ) from exc
            if generation != self._generation or not self._live:
                raise ConnectionLostError("the session changed while reconciling positions")
            self._drain()
            return self._compare(ib, broker, trigger, settled=settled)

    def _compare(
        self,
        ib: IB,
        broker_positions: Iterable[IBPosition],
        trigger: str,
        *,
        settled: set[str] | None,
    ) -> list[PositionMismatch]:
        """Compare every position with the broker's and correct what differs (synchronous).

        ``settled`` (timer and manual runs): the exec ids ib_async knew when
        reqPositions was sent. A position with an execution that arrived after
        that is left for the next run: the broker's answer may predate it.
        """
        self._reconciliations += 1
        broker: dict[tuple[str, int], IBPosition] = {}
        for pos in broker_positions:
            broker[(pos.account, pos.contract.conId)] = pos
        now = time.monotonic()
        unapplied: dict[tuple[str, int], list[IBFill]] = {}
        late: set[tuple[str, int]] = set()
        for exec_id, ib_fill in list(ib.wrapper.fills.items()):
            key = (ib_fill.execution.acctNumber, ib_fill.contract.conId)
            if settled is not None and exec_id not in settled:
                late.add(key)
            prefix = exec_prefix(exec_id)
            if prefix in self._seen:
                continue
            unapplied.setdefault(key, []).append(ib_fill)
            self._pending_since.setdefault(prefix, now)
        keys = set(broker) | set(unapplied)
        keys |= {key for key, book in self._books.items() if book.quantity != 0}
        tolerance = as_decimal(self._settings.reconcile_avg_cost_tolerance)
        found: list[PositionMismatch] = []
        for key in sorted(keys):
            if key in late:
                continue
            mismatch = self._compare_one(
                key,
                broker.get(key),
                unapplied=_latest_revisions(unapplied.get(key, [])),
                trigger=trigger,
                tolerance=tolerance,
                now=now,
            )
            if mismatch is not None:
                found.append(mismatch)
        return found

    def _compare_one(
        self,
        key: tuple[str, int],
        broker: IBPosition | None,
        *,
        unapplied: list[IBFill],
        trigger: str,
        tolerance: Decimal,
        now: float,
    ) -> PositionMismatch | None:
        book = self._books.get(key)
        ours = book.quantity if book is not None else Decimal(0)
        broker_q = as_decimal(clean_number(broker.position) or 0.0) if broker else Decimal(0)
        broker_avg = clean_number(broker.avgCost) if broker is not None else None
        waiting = [
            f
            for f in unapplied
            if now - self._pending_since.get(exec_prefix(f.execution.execId), now) < PENDING_GRACE
        ]
        in_flight = sum((_signed(f) for f in waiting), Decimal(0))
        if abs(ours + in_flight - broker_q) <= _QTY_EPS:
            if waiting or book is None or broker_q == 0 or broker_avg is None:
                return None
            ours_avg = book.ledger.state.avg_cost
            broker_dec = as_decimal(broker_avg)
            if abs(ours_avg - broker_dec) <= tolerance * abs(broker_dec):
                return None
            kind = MismatchKind.AVG_COST
        else:
            kind = MismatchKind.QUANTITY
        if book is None:
            contract = broker.contract if broker is not None else unapplied[0].contract
            book = self._new_book(key[0], contract)
        fills = tuple(to_fill(f, None) for f in unapplied)
        explained = sum((_signed(f) for f in unapplied), Decimal(0))
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
            exec_id = ib_fill.execution.execId
            prefix = exec_prefix(exec_id)
            self._seen[prefix] = _latest(self._seen.get(prefix), exec_id)
            self._pending_since.pop(prefix, None)
        self._mismatches += 1
        book.mismatch = mismatch
        book.time = mismatch.time
        self._publish(book, PositionSource.RECONCILED)
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

    # -- snapshots ------------------------------------------------------------------------

    def _publish(self, book: _Book, source: PositionSource) -> None:
        book.source = source
        if book.quantity != 0:
            self._held.add(book.con_id)
        elif not any(b.quantity != 0 for b in self._books.values() if b.con_id == book.con_id):
            self._held.discard(book.con_id)
        position = self._snapshot(book, source)
        book.published_mark = position.market_price
        if source is not PositionSource.RECONCILED:
            book.mismatch = None
        self._updates.publish(position)

    def _snapshot(
        self, book: _Book, source: PositionSource, md_active: set[int] | None = None
    ) -> Position:
        state = book.ledger.state
        flat = state.quantity == 0
        mark = None if flat else self._mark(book.con_id, md_active)
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

    # -- helpers --------------------------------------------------------------------------

    def _match(self, instrument: ContractLike | int) -> list[_Book]:
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
        return [b for b in self._books.values() if _same_instrument(b, text, contract)]

    def _default_account(self) -> str:
        if self._settings.account:
            return self._settings.account
        return self._accounts[0] if self._accounts else ""

    def _pick_account(self, account: str | None, *, strict: bool) -> str:
        if account is None:
            name = self._default_account()
            if not name and strict:
                raise NotConnectedError("no managed account is known yet: connect first")
            return name
        if strict and self._accounts and account not in self._accounts:
            raise InvalidInputError(
                f"account {account!r} is not managed by this session "
                f"(accounts: {', '.join(self._accounts)})"
            )
        return account

    def _require_ib(self, what: str) -> IB:
        state = self._supervisor.state
        if state is not ConnectionState.CONNECTED or not self._live:
            raise NotConnectedError(f"cannot {what}: the connector is {state.value}")
        return self._supervisor.ib

    def _guard(self, what: str, handler: Callable[[], None]) -> None:
        try:
            handler()
        except Exception as exc:  # a handler must never break ib_async's dispatch
            self._handler_errors += 1
            _log.opt(exception=exc).error("positions: {} handler raised {!r}", what, exc)

    def __repr__(self) -> str:
        held = sum(1 for b in self._books.values() if b.quantity != 0)
        return (
            f"<PositionService positions={held} fills={self._fills_applied} "
            f"reconciliations={self._reconciliations} mismatches={self._mismatches}>"
        )


# -- module helpers ------------------------------------------------------------------------


def _display(contract: Contract) -> str:
    if contract.secType == "CASH":
        return contract.localSymbol or f"{contract.symbol}.{contract.currency}"
    return contract.localSymbol or contract.symbol or str(contract.conId)


def _same_instrument(book: _Book, text: str, contract: Contract) -> bool:
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


def _multiplier(contract: Contract) -> float:
    value = clean_number(contract.multiplier)
    return value if value is not None and value > 0 else 1.0


def _signed(ib_fill: IBFill) -> Decimal:
    execution = ib_fill.execution
    quantity = as_decimal(clean_number(execution.shares) or 0.0)
    return quantity if execution.side.upper() in ("BOT", "BUY") else -quantity


def _latest(current: str | None, exec_id: str) -> str:
    if current is None or exec_revision(exec_id) > exec_revision(current):
        return exec_id
    return current


def _latest_revisions(fills: list[IBFill]) -> list[IBFill]:
    """One fill per execution: its latest revision (a correction replaces its original)."""
    by_prefix: dict[str, IBFill] = {}
    for ib_fill in fills:
        exec_id = ib_fill.execution.execId
        prefix = exec_prefix(exec_id)
        current = by_prefix.get(prefix)
        if current is None or exec_revision(exec_id) > exec_revision(current.execution.execId):
            by_prefix[prefix] = ib_fill
    return sorted(by_prefix.values(), key=lambda f: f.execution.execId)


def _summary(account: str, values: list[tuple[str, str, str]]) -> AccountSummary:
    """Build the summary from (tag, value, currency) triples of one account."""
    currency = next((cur for tag, _, cur in values if tag == "NetLiquidation" and cur), None)
    text: dict[str, str] = {}
    for tag, value, cur in values:
        if cur in ("", currency) or (cur == "BASE" and tag not in text):
            text[tag] = value

    def number(tag: str) -> float | None:
        return clean_number(text.get(tag))

    return AccountSummary(
        account=account,
        currency=currency,
        net_liquidation=number("NetLiquidation"),
        total_cash=number("TotalCashValue"),
        settled_cash=number("SettledCash"),
        buying_power=number("BuyingPower"),
        available_funds=number("AvailableFunds"),
        excess_liquidity=number("ExcessLiquidity"),
        equity_with_loan=number("EquityWithLoanValue"),
        gross_position_value=number("GrossPositionValue"),
        init_margin=number("InitMarginReq"),
        maint_margin=number("MaintMarginReq"),
        look_ahead_init_margin=number("LookAheadInitMarginReq"),
        look_ahead_maint_margin=number("LookAheadMaintMarginReq"),
        cushion=number("Cushion"),
        leverage=number("Leverage"),
        values=MappingProxyType(dict(sorted(text.items()))),
    )
