"""The broker's state and queries: :class:`BrokerCore` holds orders, executions and
the ledger, reports events to listeners, and saves / restores its state."""

from __future__ import annotations

import copy
import time as _time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from ibconn.core.logs import get_logger
from ibconn.sim.broker.accounts import (
    AccountFigures,
    AccountValue,
    CommissionRate,
    Ledger,
    PnLFigures,
    PositionSnapshot,
    summary_values,
)
from ibconn.sim.broker.matching import (
    BookQuote,
)
from ibconn.sim.broker.records import (
    BrokerConfig,
    BrokerEvent,
    BrokerState,
    ExecutionFilter,
    JournalEntry,
    Listener,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderStatusEvent,
    SimExecution,
    SimOrder,
)
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS, Instrument

__all__ = ["BrokerCore"]

_log = get_logger("sim")


class BrokerCore:
    """The broker's state, listeners and queries (the base of :class:`~ibconn.sim.Broker`)."""

    def __init__(
        self,
        instruments: Iterable[Instrument] = DEFAULT_INSTRUMENTS,
        config: BrokerConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        quote_provider: Callable[[Instrument], BookQuote | None] | None = None,
    ) -> None:
        self.config = config or BrokerConfig()
        self.instruments: tuple[Instrument, ...] = tuple(instruments)
        self.read_only: bool = self.config.read_only
        self.max_fill_size: float | None = self.config.max_fill_size
        self.commissions: dict[str, CommissionRate] = dict(self.config.commissions)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.quote_provider = quote_provider
        self.defer: Callable[[Callable[[], None]], None] | None = None
        """When set, how a new order's first match is scheduled (e.g. after a delay)."""
        self._listeners: list[Listener] = []
        self._quotes: dict[int, BookQuote] = {}
        self._orders: dict[int, SimOrder] = {}  # by perm id, in placement order
        self._by_key: dict[tuple[int, int], SimOrder] = {}
        self._live: dict[int, dict[int, SimOrder]] = {}  # con id -> perm id -> order
        self._executions: list[SimExecution] = []
        self._fills: list[JournalEntry] = []  # ledger journal (fills and overrides)
        self._next_perm = self.config.first_perm_id
        self._exec_seq = 0
        self._exec_stamp = f"{int(_time.time()) & 0xFFFFFFFF:08x}"
        self._max_order_id = 0
        self._day_first_exec = 0  # executions before this index belong to earlier days
        self._earlier_days: set[int] = set()  # perm ids of orders completed on earlier days
        self.ledger = self._new_ledger()

    # ------------------------------------------------------------------ plumbing

    def _new_ledger(self) -> Ledger:
        return Ledger(
            self.config.accounts,
            initial_cash=self.config.initial_cash,
            currency=self.config.currency,
            margins=self.config.margins,
        )

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event from now on."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: BrokerEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the engine
                _log.exception("broker listener failed on {}", type(event).__name__)

    def _emit_order(self, order: SimOrder, *, open_order: bool = True) -> None:
        snap = copy.copy(order)
        if open_order:
            self._emit(OpenOrderEvent(snap))
        self._emit(OrderStatusEvent(snap))

    def _error(self, client_id: int, order_id: int, err: tuple[int, str]) -> None:
        code, text = err
        _log.debug("order {} of client {} rejected: {} {}", order_id, client_id, code, text)
        self._emit(OrderErrorEvent(client_id, order_id, code, text))

    # ------------------------------------------------------------------ queries

    @property
    def accounts(self) -> tuple[str, ...]:
        """The managed accounts."""
        return self.ledger.accounts

    @property
    def default_account(self) -> str:
        """The account used when an order names none."""
        return self.config.accounts[0]

    @property
    def orders(self) -> list[SimOrder]:
        """Every order ever accepted (held, working and done), in placement order."""
        return list(self._orders.values())

    @property
    def executions(self) -> list[SimExecution]:
        """Every execution, corrections included, in the order they happened."""
        return list(self._executions)

    def order(self, client_id: int, order_id: int) -> SimOrder | None:
        """The order ``order_id`` of ``client_id``, or ``None``."""
        return self._by_key.get((client_id, order_id))

    def find_order(self, order_ref: str) -> SimOrder | None:
        """The most recent order with ``order_ref`` (working ones first), or ``None``."""
        candidates = [o for o in self._orders.values() if o.order_ref == order_ref]
        working = [o for o in candidates if not o.is_done]
        pool = working or candidates
        return pool[-1] if pool else None

    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        """Transmitted orders not done yet (of one client when given)."""
        return [
            o
            for o in self._orders.values()
            if o.is_working and (client_id is None or o.client_id == client_id)
        ]

    def completed_orders(self) -> list[SimOrder]:
        """Orders done today (filled, cancelled, inactive): :meth:`roll_over_day` ends a day."""
        return [
            o for o in self._orders.values() if o.is_done and o.perm_id not in self._earlier_days
        ]

    def find_executions(
        self, filt: ExecutionFilter | None = None, *, client_id: int | None = None
    ) -> list[SimExecution]:
        """Today's executions passing ``filt`` (and belonging to ``client_id`` when given)."""
        out = []
        for ex in self._executions[self._day_first_exec :]:
            if client_id is not None and ex.client_id != client_id:
                continue
            if filt is None or filt.matches(ex):
                out.append(ex)
        return out

    def next_valid_id(self) -> int:
        """An order id above every id any client has used (at least 1)."""
        return self._max_order_id + 1

    def instrument(self, con_id: int) -> Instrument | None:
        """The instrument with ``con_id``, or ``None``."""
        for inst in self.instruments:
            if inst.con_id == con_id:
                return inst
        return None

    def instrument_for(self, symbol: str) -> Instrument:
        """The instrument named ``symbol`` (symbol, local symbol or display name)."""
        wanted = symbol.upper()
        for inst in self.instruments:
            names = {inst.symbol.upper(), inst.local_symbol.upper(), inst.display_name.upper()}
            if wanted in names:
                return inst
        raise KeyError(f"unknown instrument {symbol!r}")

    def quote(self, instrument: Instrument) -> BookQuote:
        """The latest quote of ``instrument`` (provider or start price if none seen)."""
        q = self._quotes.get(instrument.con_id)
        if q is not None:
            return q
        if self.quote_provider is not None:
            provided = self.quote_provider(instrument)
            if provided is not None:
                return provided
        half = instrument.spread / 2.0
        p = instrument.start_price
        return BookQuote(bid=p - half, ask=p + half, last=p)

    def _mark(self, instrument: Instrument) -> float | None:
        return self.quote(instrument).mark

    def positions(
        self, account: str | None = None, *, include_closed: bool = False
    ) -> list[PositionSnapshot]:
        """Open positions marked to the market (closed ones too when asked)."""
        return self.ledger.positions(self._mark, account, include_closed=include_closed)

    def position(self, account: str, con_id: int) -> PositionSnapshot | None:
        """One position (also a closed one), or ``None`` if never held."""
        return self.ledger.position(account, con_id, self._mark)

    def account_figures(self, account: str) -> AccountFigures:
        """Cash, values, margin and P&L of ``account``."""
        return self.ledger.figures(account, self._mark)

    def account_values(self, account: str) -> list[AccountValue]:
        """The values reqAccountUpdates streams for ``account``."""
        return self.ledger.account_values(account, self._mark)

    def account_summary(self, account: str, tags: Iterable[str]) -> list[AccountValue]:
        """reqAccountSummary's answers for ``tags``."""
        return summary_values(self.account_figures(account), tags)

    def pnl(self, account: str) -> PnLFigures:
        """reqPnL's daily, unrealized and realized P&L."""
        return self.ledger.pnl(account, self._mark)

    # ------------------------------------------------------------------ persistence

    def state(self) -> BrokerState:
        """A copy of the broker's state (for a state file)."""
        return BrokerState(
            orders=[copy.copy(o) for o in self._orders.values()],
            executions=list(self._executions),
            journal=[copy.copy(f) for f in self._fills],
            next_perm_id=self._next_perm,
            exec_seq=self._exec_seq,
            exec_stamp=self._exec_stamp,
            max_order_id=self._max_order_id,
            day_first_exec=self._day_first_exec,
            earlier_days=set(self._earlier_days),
        )

    def restore(self, state: BrokerState) -> None:
        """Carry on from ``state``: working orders work again (from the next quote on),
        positions, cash and P&L are the journal replayed."""
        self._orders = {o.perm_id: o for o in state.orders}
        self._by_key = {(o.client_id, o.order_id): o for o in state.orders}
        self._live = {}
        for order in state.orders:
            order.pending_arrival = False
            if order.is_working:
                self._live.setdefault(order.instrument.con_id, {})[order.perm_id] = order
        self._executions = list(state.executions)
        self._fills = list(state.journal)
        self._next_perm = state.next_perm_id
        self._exec_seq = state.exec_seq
        self._exec_stamp = state.exec_stamp
        self._max_order_id = state.max_order_id
        self._day_first_exec = state.day_first_exec
        self._earlier_days = set(state.earlier_days)
        self._replay_ledger("")

    def _replay_ledger(self, watch_exec_id: str) -> float | None:
        """Rebuild the ledger from the journal; return the realized P&L of one entry."""
        self.ledger = self._new_ledger()
        realized: float | None = None
        for entry in self._fills:
            if entry.override is not None:
                qty, avg, mark = entry.override
                self.ledger.set_position(entry.account, entry.instrument, qty, avg, mark)
                continue
            r = self.ledger.apply_fill(
                entry.account, entry.instrument, entry.quantity, entry.price, entry.commission
            )
            if entry.exec_id == watch_exec_id:
                realized = r
        return realized
