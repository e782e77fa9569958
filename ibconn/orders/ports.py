"""What the order service needs from the rest of the connector, as small protocols.

The order service is built from these (``ibconn/assembly.py`` passes the real
supervisor, contract resolver, alert bus, pacer and settings; a test may pass
fakes). :class:`QuoteSource` and :class:`PreTradeCheck` are the two parts built
after the order service (market data and risk): the composition root installs
them with ``OrderService.set_quote_source`` / ``set_pre_trade_check``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol

from ib_async import IB

from ibconn.connection.session import ConnectionState
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.codes import Severity
from ibconn.orders.models import OrderSnapshot
from ibconn.orders.spec import OrderSpec

__all__ = [
    "AlertPublisher",
    "ContractSource",
    "OrderLink",
    "OrderPacer",
    "OrderSettings",
    "PreTradeCheck",
    "QuoteSource",
]


class OrderLink(Protocol):
    """The link to TWS (the supervisor, ibconn/connection/supervisor.py)."""

    @property
    def ib(self) -> IB:
        """The ``IB`` of the current session (raises NotConnectedError before the first)."""

    @property
    def state(self) -> ConnectionState:
        """The connection state."""

    async def wait_connected(self, timeout: float | None) -> None:
        """Wait until connected (raises RequestTimeoutError after ``timeout``)."""


class OrderPacer(Protocol):
    """The pacer every outgoing message passes (ibconn/pacing/pacer.py)."""

    @property
    def installed(self) -> bool:
        """Whether the pacer sits in the ``IB``'s send path (then it reports what it sent)."""

    @property
    def limit(self) -> int:
        """Messages allowed per window."""

    @property
    def window(self) -> float:
        """The window in seconds."""


class ContractSource(Protocol):
    """Resolves what an order trades (the contract resolver, ibconn/contracts/resolver.py)."""

    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        """The resolved contract if it is at hand (no round trip)."""

    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        """A contract resolved earlier, by conId."""

    async def resolve(self, instrument: ContractLike) -> ResolvedContract:
        """Resolve ``instrument`` (raises InvalidInputError for an unknown one)."""


class AlertPublisher(Protocol):
    """Where an order lost or rejected by TWS is alerted (the alert bus, ibconn/core/alerts.py)."""

    def publish(
        self,
        severity: Severity,
        category: Any,
        message: str,
        *,
        code: int | None = None,
        coalesce_key: Hashable | None = None,
        **context: Any,
    ) -> object:
        """Publish one alert."""


class OrderSettings(Protocol):
    """The settings orders read (a subset of ``ConnectorSettings``)."""

    @property
    def order_ack_timeout(self) -> float:
        """Seconds a new order, a change or a cancel waits for TWS's answer by default."""

    @property
    def market_data_timeout(self) -> float:
        """Seconds a market rule or a snapshot quote may take."""

    @property
    def resync_timeout(self) -> float:
        """Seconds the resync after a reconnect may take."""

    @property
    def account(self) -> str | None:
        """The account orders are sent for when they name none."""


class PreTradeCheck(Protocol):
    """The pre-trade hook every order and change passes (the risk service, ibconn/risk/).

    ``prepare`` may await (fetch a reference price) and runs during validation;
    ``check`` runs synchronously right before the message is handed to ib_async
    and the pacer, so nothing can change between the check and the send. It
    raises (:class:`~ibconn.errors.RiskRejectedError`) to refuse the order.
    """

    def needs_prepare(self, spec: OrderSpec, resolved: ResolvedContract) -> bool:
        """Whether :meth:`prepare` has anything to do for ``spec`` (cheap, synchronous)."""

    async def prepare(self, spec: OrderSpec, resolved: ResolvedContract) -> None:
        """Get ready to check ``spec`` (may await)."""

    def check(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        replaces: OrderSnapshot | None,
        parent: OrderSnapshot | None,
    ) -> None:
        """Raise to refuse ``spec``; ``replaces`` is the order a modification changes,
        ``parent`` the entry of a bracket child."""


class QuoteSource(Protocol):
    """Takes a snapshot of the top of the book (the market data service's ``quote``)."""

    async def __call__(self, instrument: ContractLike, timeout: float | None = None) -> Any:
        """A quote with ``bid`` and ``ask`` (``None`` for a missing side)."""
