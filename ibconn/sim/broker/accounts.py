"""Accounts of the simulated gateway: cash, positions, P&L, margin, commissions.

The :class:`Ledger` is the bookkeeping half of the broker. It knows nothing of
orders: it is told about fills (``apply_fill``) and position overrides
(``set_position``) and answers with positions and account figures marked to
prices it is given.

Conventions, as TWS reports them:

* ``avg_cost`` is per unit *including commissions* and, for futures, times the
  multiplier (a long ES contract bought at 6000.00 with 2.25 commission has an
  average cost of 300002.25); for a short position it is the net proceeds per
  unit (price minus commission per unit);
* ``market_value`` is quantity x price x multiplier; ``unrealized_pnl`` is
  ``market_value - quantity * avg_cost``;
* a closing fill realizes ``closed quantity x (price x multiplier - avg_cost)``
  (sign adjusted for shorts) minus the part of its own commission that belongs
  to the closing quantity; a fill through zero closes the old position and
  opens the rest at the fill price with the rest of the commission;
* stocks and forex move cash by their notional; futures move cash only by
  realized P&L (their open P&L shows in ``NetLiquidation`` through
  ``UnrealizedPnL``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ibconn.sim.market.instruments import Instrument

__all__ = [
    "DEFAULT_COMMISSIONS",
    "DEFAULT_MARGINS",
    "AccountFigures",
    "AccountValue",
    "CommissionRate",
    "Ledger",
    "MarginRate",
    "PnLFigures",
    "PositionSnapshot",
    "ledger_values",
    "order_commission",
    "summary_values",
]


_QTY_EPS = 1e-9

MarkFn = Callable[[Instrument], "float | None"]


@dataclass(frozen=True, slots=True)
class CommissionRate:
    """A commission schedule: per unit plus a share of the value, with a floor and a cap.

    The minimum and the cap apply per *order* (as IBKR's fixed pricing does):
    the commission of an execution is what the order's cumulative commission
    grew by, so a 250-share order filled 100/100/50 at 0.005 per share with a
    1.00 minimum is charged 1.00, 0.00 and 0.25.
    """

    per_unit: float = 0.005
    minimum: float = 1.0
    maximum_pct: float | None = 0.01
    pct_of_value: float = 0.0
    currency: str = "USD"


DEFAULT_COMMISSIONS: Mapping[str, CommissionRate] = {
    "STK": CommissionRate(per_unit=0.005, minimum=1.0, maximum_pct=0.01),
    "FUT": CommissionRate(per_unit=2.25, minimum=0.0, maximum_pct=None),
    "CASH": CommissionRate(per_unit=0.0, minimum=2.0, maximum_pct=None, pct_of_value=0.00002),
}
"""Default schedules by security type (IBKR-like fixed pricing, exchange fees folded in)."""


@dataclass(frozen=True, slots=True)
class MarginRate:
    """Initial and maintenance margin as fractions of the position's notional value."""

    initial: float
    maintenance: float


DEFAULT_MARGINS: Mapping[str, MarginRate] = {
    "STK": MarginRate(initial=0.25, maintenance=0.25),
    "FUT": MarginRate(initial=0.06, maintenance=0.05),
    "CASH": MarginRate(initial=0.03, maintenance=0.03),
}
"""Default margin rates by security type (Reg-T-like for stocks)."""


def order_commission(rate: CommissionRate, quantity: float, value: float) -> float:
    """Total commission of an order that has filled ``quantity`` worth ``value``."""
    if quantity <= 0:
        return 0.0
    amount = rate.per_unit * quantity + rate.pct_of_value * value
    amount = max(amount, rate.minimum)
    if rate.maximum_pct is not None:
        amount = min(amount, rate.maximum_pct * value)
    return round(amount, 6)


@dataclass(frozen=True, slots=True)
class AccountValue:
    """One account value as TWS sends it: key, text value, currency, account."""

    key: str
    value: str
    currency: str
    account: str


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """A position at one moment, marked to the market.

    ``realized_pnl`` and ``daily_pnl`` are since the broker's day start.
    """

    account: str
    instrument: Instrument
    quantity: float
    avg_cost: float
    market_price: float
    market_value: float
    unrealized_pnl: float
    realized_pnl: float
    daily_pnl: float

    @property
    def con_id(self) -> int:
        """The instrument's contract id."""
        return self.instrument.con_id

    @property
    def symbol(self) -> str:
        """The instrument's symbol."""
        return self.instrument.symbol


@dataclass(frozen=True, slots=True)
class PnLFigures:
    """Daily, unrealized and realized P&L of an account (reqPnL)."""

    daily_pnl: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True, slots=True)
class AccountFigures:
    """The numbers behind an account's values, in the base currency."""

    account: str
    currency: str
    total_cash: float
    stock_market_value: float
    futures_pnl: float
    gross_position_value: float
    net_liquidation: float
    init_margin: float
    maint_margin: float
    realized_pnl: float
    unrealized_pnl: float
    daily_pnl: float

    @property
    def equity_with_loan(self) -> float:
        """Equity with loan value (equal to net liquidation: no options or bonds here)."""
        return self.net_liquidation

    @property
    def available_funds(self) -> float:
        """Equity with loan minus initial margin."""
        return self.equity_with_loan - self.init_margin

    @property
    def excess_liquidity(self) -> float:
        """Equity with loan minus maintenance margin."""
        return self.equity_with_loan - self.maint_margin

    @property
    def buying_power(self) -> float:
        """Four times the available funds (a margin account), never negative."""
        return max(0.0, 4.0 * self.available_funds)

    @property
    def cushion(self) -> float:
        """Excess liquidity as a fraction of net liquidation."""
        if self.net_liquidation <= 0:
            return 0.0
        return self.excess_liquidity / self.net_liquidation

    @property
    def leverage(self) -> float:
        """Gross position value over net liquidation."""
        if self.net_liquidation <= 0:
            return 0.0
        return self.gross_position_value / self.net_liquidation


@dataclass(slots=True)
class _Position:
    account: str
    instrument: Instrument
    quantity: float = 0.0
    avg_cost: float = 0.0
    realized: float = 0.0
    # daily P&L = quantity * mark * multiplier + day_flow  (day start had nothing open)
    day_flow: float = 0.0


@dataclass(slots=True)
class _Book:
    cash: float
    realized: float = 0.0
    positions: dict[int, _Position] = field(default_factory=dict)


def _fmt(value: float) -> str:
    return f"{value:.2f}"


class Ledger:
    """Cash and positions of every account, and the figures derived from them."""

    def __init__(
        self,
        accounts: Sequence[str],
        *,
        initial_cash: float = 1_000_000.0,
        currency: str = "USD",
        margins: Mapping[str, MarginRate] | None = None,
    ) -> None:
        self.accounts: tuple[str, ...] = tuple(accounts)
        self.initial_cash = initial_cash
        self.currency = currency
        self.margins: Mapping[str, MarginRate] = dict(margins or DEFAULT_MARGINS)
        self._books: dict[str, _Book] = {a: _Book(cash=initial_cash) for a in self.accounts}

    # ------------------------------------------------------------------ updates

    def _book(self, account: str) -> _Book:
        book = self._books.get(account)
        if book is None:
            book = self._books[account] = _Book(cash=self.initial_cash)
            self.accounts = (*self.accounts, account)
        return book

    def _position(self, account: str, instrument: Instrument) -> _Position:
        book = self._book(account)
        pos = book.positions.get(instrument.con_id)
        if pos is None:
            pos = book.positions[instrument.con_id] = _Position(account, instrument)
        return pos

    def apply_fill(
        self,
        account: str,
        instrument: Instrument,
        quantity: float,
        price: float,
        commission: float,
    ) -> float | None:
        """Book a fill of signed ``quantity`` (+ buy, - sell) at ``price``.

        Returns the realized P&L (net of the closing part of the commission)
        when the fill closed some of the position, else ``None``.
        """
        book = self._book(account)
        pos = self._position(account, instrument)
        mult = instrument.multiplier
        notional = quantity * price * mult
        pos.day_flow -= notional + commission
        q = pos.quantity
        realized: float | None = None
        if abs(q) < _QTY_EPS or (q > 0) == (quantity > 0):
            cost = q * pos.avg_cost + notional + commission
            pos.quantity = q + quantity
            pos.avg_cost = cost / pos.quantity
        else:
            closed = min(abs(quantity), abs(q))
            close_commission = commission * closed / abs(quantity)
            open_commission = commission - close_commission
            sign = 1.0 if q > 0 else -1.0
            realized = sign * closed * (price * mult - pos.avg_cost) - close_commission
            new_q = q + quantity
            if abs(new_q) < _QTY_EPS:
                pos.quantity = 0.0
                pos.avg_cost = 0.0
            elif (new_q > 0) != (q > 0):
                pos.quantity = new_q
                pos.avg_cost = (new_q * price * mult + open_commission) / new_q
            else:
                pos.quantity = new_q
            pos.realized += realized
            book.realized += realized
        if instrument.sec_type == "FUT":
            if realized is not None:
                book.cash += realized
        else:
            book.cash -= notional + commission
        return realized

    def set_position(
        self,
        account: str,
        instrument: Instrument,
        quantity: float,
        avg_cost: float,
        mark: float | None,
    ) -> None:
        """Override a position (no cash moves); daily P&L of the change starts at zero."""
        pos = self._position(account, instrument)
        price = mark if mark is not None else avg_cost / (instrument.multiplier or 1.0)
        pos.day_flow -= (quantity - pos.quantity) * price * instrument.multiplier
        pos.quantity = float(quantity)
        pos.avg_cost = float(avg_cost) if quantity else 0.0

    # ------------------------------------------------------------------ queries

    def has_position(self, account: str, con_id: int) -> bool:
        """True when the account has (or had today) a position in ``con_id``."""
        book = self._books.get(account)
        return book is not None and con_id in book.positions

    def quantity(self, account: str, con_id: int) -> float:
        """The account's current quantity in ``con_id`` (0 when none)."""
        book = self._books.get(account)
        pos = book.positions.get(con_id) if book else None
        return pos.quantity if pos else 0.0

    def _snapshot(self, pos: _Position, mark: float | None) -> PositionSnapshot:
        inst = pos.instrument
        mult = inst.multiplier
        if mark is None:
            mark = pos.avg_cost / mult if pos.quantity else 0.0
        value = pos.quantity * mark * mult
        unrealized = value - pos.quantity * pos.avg_cost if pos.quantity else 0.0
        return PositionSnapshot(
            account=pos.account,
            instrument=inst,
            quantity=pos.quantity,
            avg_cost=pos.avg_cost,
            market_price=mark,
            market_value=value,
            unrealized_pnl=unrealized,
            realized_pnl=pos.realized,
            daily_pnl=value + pos.day_flow,
        )

    def position(self, account: str, con_id: int, mark: MarkFn) -> PositionSnapshot | None:
        """The snapshot of one position (also a closed one), or ``None`` if never held."""
        book = self._books.get(account)
        pos = book.positions.get(con_id) if book else None
        if pos is None:
            return None
        return self._snapshot(pos, mark(pos.instrument))

    def positions(
        self, mark: MarkFn, account: str | None = None, *, include_closed: bool = False
    ) -> list[PositionSnapshot]:
        """Snapshots of all positions (of one account when given)."""
        out: list[PositionSnapshot] = []
        for name, book in self._books.items():
            if account is not None and name != account:
                continue
            for pos in book.positions.values():
                if include_closed or abs(pos.quantity) >= _QTY_EPS:
                    out.append(self._snapshot(pos, mark(pos.instrument)))
        return out

    def figures(self, account: str, mark: MarkFn) -> AccountFigures:
        """Cash, values, margin and P&L of ``account`` marked with ``mark``."""
        book = self._book(account)
        stock_value = 0.0
        futures_pnl = 0.0
        gross = 0.0
        init_margin = 0.0
        maint_margin = 0.0
        unrealized = 0.0
        daily = 0.0
        for pos in book.positions.values():
            snap = self._snapshot(pos, mark(pos.instrument))
            unrealized += snap.unrealized_pnl
            daily += snap.daily_pnl
            notional = abs(snap.market_value)
            if pos.instrument.sec_type == "FUT":
                futures_pnl += snap.unrealized_pnl
            else:
                stock_value += snap.market_value
                gross += notional
            rate = self.margins.get(pos.instrument.sec_type, MarginRate(1.0, 1.0))
            init_margin += notional * rate.initial
            maint_margin += notional * rate.maintenance
        return AccountFigures(
            account=account,
            currency=self.currency,
            total_cash=book.cash,
            stock_market_value=stock_value,
            futures_pnl=futures_pnl,
            gross_position_value=gross,
            net_liquidation=book.cash + stock_value + futures_pnl,
            init_margin=init_margin,
            maint_margin=maint_margin,
            realized_pnl=book.realized,
            unrealized_pnl=unrealized,
            daily_pnl=daily,
        )

    def pnl(self, account: str, mark: MarkFn) -> PnLFigures:
        """Daily, unrealized and realized P&L of ``account`` (reqPnL)."""
        fig = self.figures(account, mark)
        return PnLFigures(fig.daily_pnl, fig.unrealized_pnl, fig.realized_pnl)

    def account_values(self, account: str, mark: MarkFn) -> list[AccountValue]:
        """The account values TWS streams for reqAccountUpdates (msg 6)."""
        f = self.figures(account, mark)
        cur = f.currency
        money: list[tuple[str, float]] = [
            ("AccruedCash", 0.0),
            ("AvailableFunds", f.available_funds),
            ("BuyingPower", f.buying_power),
            ("EquityWithLoanValue", f.equity_with_loan),
            ("ExcessLiquidity", f.excess_liquidity),
            ("FullAvailableFunds", f.available_funds),
            ("FullExcessLiquidity", f.excess_liquidity),
            ("FullInitMarginReq", f.init_margin),
            ("FullMaintMarginReq", f.maint_margin),
            ("GrossPositionValue", f.gross_position_value),
            ("InitMarginReq", f.init_margin),
            ("LookAheadAvailableFunds", f.available_funds),
            ("LookAheadExcessLiquidity", f.excess_liquidity),
            ("LookAheadInitMarginReq", f.init_margin),
            ("LookAheadMaintMarginReq", f.maint_margin),
            ("MaintMarginReq", f.maint_margin),
            ("NetLiquidation", f.net_liquidation),
            ("SettledCash", f.total_cash),
            ("TotalCashValue", f.total_cash),
        ]
        values = [
            AccountValue("AccountCode", account, "", account),
            AccountValue("AccountReady", "true", "", account),
            AccountValue("AccountType", "INDIVIDUAL", "", account),
            AccountValue("Currency", cur, cur, account),
            AccountValue("Cushion", f"{f.cushion:.6f}", "", account),
            AccountValue("DayTradesRemaining", "-1", "", account),
            AccountValue("Leverage-S", f"{f.leverage:.2f}", "", account),
        ]
        values += [AccountValue(k, _fmt(v), cur, account) for k, v in money]
        values += ledger_values(f, ("BASE", cur))
        values.sort(key=lambda v: (v.key, v.currency))
        return values


def ledger_values(f: AccountFigures, currencies: Iterable[str]) -> list[AccountValue]:
    """The per-currency ledger keys (CashBalance, NetLiquidationByCurrency, ...)."""
    ledger: list[tuple[str, float]] = [
        ("CashBalance", f.total_cash),
        ("FuturesPNL", f.futures_pnl),
        ("NetLiquidationByCurrency", f.net_liquidation),
        ("RealizedPnL", f.realized_pnl),
        ("StockMarketValue", f.stock_market_value),
        ("TotalCashBalance", f.total_cash),
        ("UnrealizedPnL", f.unrealized_pnl),
    ]
    out: list[AccountValue] = []
    for cur in currencies:
        out += [AccountValue(k, _fmt(v), cur, f.account) for k, v in ledger]
        out.append(AccountValue("ExchangeRate", "1.00", cur, f.account))
    return out


def summary_values(f: AccountFigures, tags: Iterable[str]) -> list[AccountValue]:
    """The reqAccountSummary answers for ``tags`` (unknown tags are skipped).

    ``$LEDGER`` gives the ledger keys in BASE, ``$LEDGER:ALL`` in BASE and the
    account currency, ``$LEDGER:<CUR>`` in that currency only.
    """
    cur = f.currency
    money: dict[str, float] = {
        "NetLiquidation": f.net_liquidation,
        "TotalCashValue": f.total_cash,
        "SettledCash": f.total_cash,
        "AccruedCash": 0.0,
        "BuyingPower": f.buying_power,
        "EquityWithLoanValue": f.equity_with_loan,
        "PreviousDayEquityWithLoanValue": f.equity_with_loan - f.daily_pnl,
        "GrossPositionValue": f.gross_position_value,
        "RegTEquity": f.equity_with_loan,
        "RegTMargin": f.init_margin,
        "SMA": max(0.0, f.available_funds),
        "InitMarginReq": f.init_margin,
        "MaintMarginReq": f.maint_margin,
        "AvailableFunds": f.available_funds,
        "ExcessLiquidity": f.excess_liquidity,
        "FullInitMarginReq": f.init_margin,
        "FullMaintMarginReq": f.maint_margin,
        "FullAvailableFunds": f.available_funds,
        "FullExcessLiquidity": f.excess_liquidity,
        "LookAheadInitMarginReq": f.init_margin,
        "LookAheadMaintMarginReq": f.maint_margin,
        "LookAheadAvailableFunds": f.available_funds,
        "LookAheadExcessLiquidity": f.excess_liquidity,
    }
    plain: dict[str, str] = {
        "AccountType": "INDIVIDUAL",
        "Cushion": f"{f.cushion:.6f}",
        "LookAheadNextChange": "0",
        "HighestSeverity": "0",
        "DayTradesRemaining": "-1",
        "DayTradesRemainingT+1": "-1",
        "DayTradesRemainingT+2": "-1",
        "DayTradesRemainingT+3": "-1",
        "DayTradesRemainingT+4": "-1",
        "Leverage": f"{f.leverage:.2f}",
    }
    out: list[AccountValue] = []
    for raw in tags:
        tag = raw.strip()
        if not tag:
            continue
        if tag in money:
            out.append(AccountValue(tag, _fmt(money[tag]), cur, f.account))
        elif tag in plain:
            out.append(AccountValue(tag, plain[tag], "", f.account))
        elif tag.upper().startswith("$LEDGER"):
            _, _, which = tag.partition(":")
            which = which.upper()
            if not which:
                currencies: tuple[str, ...] = ("BASE",)
            elif which == "ALL":
                currencies = ("BASE", cur)
            else:
                currencies = (which,) if which in {cur, "BASE"} else ()
            out += ledger_values(f, currencies)
    return out
