"""What market data needs of the packages below it (protocols declared by the consumer).

The supervisor (:class:`~ibconn.connection.supervisor.Supervisor`) is an
:class:`IBSource`; the contract resolver
(:class:`~ibconn.contracts.resolver.ContractResolver`) a :class:`ContractSource`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ibconn.contracts.resolver import ContractLike, ResolvedContract

if TYPE_CHECKING:
    from ib_async import IB

__all__ = ["ContractSource", "IBSource"]


class IBSource(Protocol):
    """The ``ib_async.IB`` of the current connection."""

    @property
    def ib(self) -> IB:
        """The ``IB``; raises :class:`~ibconn.errors.NotConnectedError` before the first
        connect."""
        ...


class ContractSource(Protocol):
    """Resolves instruments to qualified contracts (once; cached afterwards)."""

    async def resolve(self, instrument: ContractLike) -> ResolvedContract:
        """Qualify ``instrument`` (raises :class:`~ibconn.errors.InvalidInputError`)."""
        ...

    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        """The cached resolution, ``None`` when ``instrument`` was never resolved."""
        ...
