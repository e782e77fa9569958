"""Small stand-ins for the position service's collaborators (unit tests, no gateway)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ib_async import CommissionReport, Contract, Execution, PortfolioItem
from ib_async import Fill as IBFill
from ib_async import Position as IBPosition

from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.alerts import AlertBus
from ibconn.orders.models import Fill, OrderAction
from ibconn.positions.books import Books
from ibconn.positions.ingest import ExecutionLog, FillIngest
from ibconn.positions.marks import MarkBook
from ibconn.positions.reconcile import Reconciler

FAKE_ACCOUNT = "DU1"
AAPL = Contract(conId=265598, symbol="AAPL", secType="STK", currency="USD", localSymbol="AAPL")
ES_Z6 = Contract(
    conId=495512563,
    symbol="ES",
    secType="FUT",
    currency="USD",
    localSymbol="ESZ6",
    multiplier="50",
)
T0 = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)


class NoContracts:
    """A resolver that has resolved nothing."""

    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        return None

    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        return None


@dataclass
class Settings:
    account: str = ""
    resync_timeout: float = 1.0
    order_ack_timeout: float = 1.0
    reconcile_interval: float = 60.0
    reconcile_avg_cost_tolerance: float = 0.0001


@dataclass
class Parts:
    """Books, execution log, ingest and reconciler wired as the service wires them."""

    settings: Settings = field(default_factory=Settings)
    alerts: AlertBus = field(default_factory=AlertBus)
    contracts: NoContracts = field(default_factory=NoContracts)

    def __post_init__(self) -> None:
        self.marks = MarkBook(self.contracts, None)
        self.books = Books(self.contracts, self.marks)
        self.log = ExecutionLog()
        self.ingest = FillIngest(
            self.books, self.log, self.contracts, lambda: FAKE_ACCOUNT, lambda fill: None
        )
        self.reconciler = Reconciler(self.books, self.log, self.alerts, self.settings)


def make_fill(
    exec_id: str,
    quantity: float,
    price: float,
    *,
    contract: Contract = AAPL,
    commission: float | None = 1.0,
    account: str = FAKE_ACCOUNT,
) -> Fill:
    """An ibconn fill (positive quantity buys, negative sells)."""
    return Fill(
        exec_id=exec_id,
        order_ref=None,
        order_id=1,
        perm_id=1,
        symbol=contract.localSymbol or contract.symbol,
        con_id=contract.conId,
        action=OrderAction.BUY if quantity > 0 else OrderAction.SELL,
        quantity=abs(quantity),
        price=price,
        time=T0,
        account=account,
        commission=commission,
    )


def ib_fill(
    exec_id: str, quantity: float, price: float, *, contract: Contract = AAPL, **more: Any
) -> IBFill:
    """An execution as ib_async reports it (``ib.fills()``)."""
    execution = Execution(
        execId=exec_id,
        acctNumber=more.get("account", FAKE_ACCOUNT),
        side="BOT" if quantity > 0 else "SLD",
        shares=abs(quantity),
        price=price,
        time=T0,
    )
    return IBFill(contract, execution, CommissionReport(), T0)


def broker(quantity: float, avg_cost: float, contract: Contract = AAPL) -> IBPosition:
    """A position as TWS reports it."""
    return IBPosition(FAKE_ACCOUNT, contract, quantity, avg_cost)


def portfolio(price: Any, contract: Contract = AAPL) -> PortfolioItem:
    """A portfolio update (``updatePortfolioEvent``) carrying a market price."""
    return PortfolioItem(contract, 0.0, price, 0.0, 0.0, 0.0, 0.0, FAKE_ACCOUNT)
