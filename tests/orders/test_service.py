"""The order service built over fakes: no gateway, no socket (ibconn/orders/service.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from ib_async import Contract

from ibconn import InvalidInputError, NotConnectedError
from ibconn.connection.session import ConnectionState
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.orders.service import OrderService
from ibconn.orders.spec import OrderSpec


class Untouchable:
    """A collaborator the constructor must not call: any attribute access fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the constructor used .{name}")


@dataclass
class Settings:
    order_ack_timeout: float = 1.0
    market_data_timeout: float = 1.0
    resync_timeout: float = 1.0
    account: str | None = None


class Link:
    state = ConnectionState.DISCONNECTED

    @property
    def ib(self) -> Any:
        raise NotConnectedError("no IB in this test")

    async def wait_connected(self, timeout: float | None) -> None:
        raise AssertionError("not awaited in this test")


class Contracts:
    def __init__(self, known: ResolvedContract) -> None:
        self.known = known

    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        return self.known if instrument == self.known.symbol else None

    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        return self.known if con_id == self.known.con_id else None

    async def resolve(self, instrument: ContractLike) -> ResolvedContract:
        if instrument != self.known.symbol:
            raise InvalidInputError(f"{instrument!r} is not a known symbol")
        return self.known


def xyz() -> ResolvedContract:
    return ResolvedContract(
        contract=Contract(conId=1, symbol="XYZ", secType="STK"),
        con_id=1,
        symbol="XYZ",
        sec_type="STK",
        exchange="SMART",
        primary_exchange="NYSE",
        currency="USD",
        local_symbol="XYZ",
        min_tick=0.01,
        market_rule_ids=(),
        size_increment=1.0,
        min_size=1.0,
        multiplier=1.0,
        long_name="XYZ CORP",
        time_zone="US/Eastern",
    )


def service(contracts: Any = None) -> OrderService:
    return OrderService(
        Link(), contracts or Untouchable(), Settings(), Untouchable(), Untouchable()
    )


def test_the_constructor_installs_itself_into_nothing() -> None:
    orders = OrderService(Link(), Untouchable(), Settings(), Untouchable(), Untouchable())
    assert orders.orders() == []
    assert orders.handler_errors == 0


async def test_check_validates_a_spec_against_its_contract_without_sending() -> None:
    orders = service(Contracts(xyz()))
    resolved = await orders.resolve("XYZ")
    spec = OrderSpec(symbol="XYZ", action="BUY", quantity=10, order_type="LMT", limit_price=9.5)
    assert await orders.check(spec, resolved) == spec
    rounded = spec.replace(limit_price=9.519, round_prices=True)
    assert (await orders.check(rounded, resolved)).limit_price == 9.51
    with pytest.raises(InvalidInputError, match="increment"):
        await orders.check(spec.replace(limit_price=9.519), resolved)


async def test_resolve_names_an_unknown_symbol() -> None:
    orders = service(Contracts(xyz()))
    with pytest.raises(InvalidInputError, match="unknown or invalid symbol"):
        await orders.resolve("NOPE")


async def test_placing_while_disconnected_is_refused_before_any_check() -> None:
    orders = service()
    spec = OrderSpec(symbol="XYZ", action="BUY", quantity=10)
    with pytest.raises(NotConnectedError, match="never queues orders"):
        await orders.place_order(spec)
