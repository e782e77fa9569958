"""The risk and exit services built over fakes: no gateway, nothing installed by a constructor."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pytest
from ib_async import IB, Stock

from ibconn import InvalidInputError, RiskRejectedError
from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import ConnectionEvent, ConnectionState, Session
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.core.streams import Subscription
from ibconn.errors import NotConnectedError
from ibconn.orders.models import Fill, OrderSnapshot, OrderSpec, OrderUpdate, WorkingOrderView
from ibconn.orders.records import OrderHandle, OrderLike
from ibconn.risk.exits import ExitService
from ibconn.risk.models import Holding, KillSwitchState
from ibconn.risk.service import RiskService

AAPL = ResolvedContract(
    contract=Stock("AAPL", "SMART", "USD"),
    con_id=265598,
    symbol="AAPL",
    sec_type="STK",
    exchange="SMART",
    primary_exchange="NASDAQ",
    currency="USD",
    local_symbol="AAPL",
    min_tick=0.01,
    market_rule_ids=(),
    size_increment=1.0,
    min_size=1.0,
    multiplier=1.0,
    long_name="",
    time_zone="US/Eastern",
)


class Pacer:
    installed = False

    def critical(self) -> AbstractContextManager[None]:
        return nullcontext()


class DownLink:
    """A supervisor that never connected (and has no way to accept a pre-trade check)."""

    state = ConnectionState.DISCONNECTED
    session: Session | None = None
    pacer = Pacer()

    @property
    def ib(self) -> IB:
        raise NotConnectedError("not connected yet")

    def events(self, capacity: int | None = None) -> Subscription[ConnectionEvent]:
        raise AssertionError("no task runs before a session")


class Contracts:
    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        return AAPL

    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        return AAPL if con_id == AAPL.con_id else None

    async def resolve(self, instrument: ContractLike) -> ResolvedContract:
        return AAPL


class NoOrders:
    """An order service with nothing working and no ``set_pre_trade_check``."""

    def orders(self, *, working_only: bool = False) -> list[OrderSnapshot]:
        return []

    def working_count(self) -> int:
        return 0

    def working_views(self) -> list[WorkingOrderView]:
        return []

    def get_order_status(self, order: OrderLike) -> OrderSnapshot:
        raise AssertionError("nothing works")

    async def wait_for_order(self, order: OrderLike) -> OrderSnapshot:
        raise AssertionError("nothing works")

    def order_updates(
        self, order: OrderLike | None = None, capacity: int | None = None
    ) -> Subscription[OrderUpdate]:
        raise AssertionError("no task runs before a session")

    def unpublished_fills(self) -> list[Fill]:
        return []

    async def place_order(
        self, spec: OrderSpec, *, wait_timeout: float | None = None
    ) -> OrderHandle:
        raise AssertionError("nothing is placed")

    async def modify_order(self, order: OrderLike, **changes: Any) -> Any:
        raise AssertionError("nothing is modified")

    async def cancel_order(
        self, order: OrderLike, *, wait_timeout: float | None = None
    ) -> OrderSnapshot:
        raise AssertionError("nothing is cancelled")


class FlatBook:
    """What the exits read of risk: no position (and no ``on_kill_switch_change``)."""

    kill_switch_state = KillSwitchState(engaged=False)

    def default_account(self) -> str:
        return "DU1"

    def holdings(self) -> list[Holding]:
        return []

    def market_price(self, con_id: int) -> float | None:
        return None

    async def reference_price(self, resolved: object) -> float | None:
        return None


def _risk(**limits: Any) -> tuple[RiskService, AlertBus]:
    settings = ConnectorSettings(risk=limits)
    alerts = AlertBus()
    risk = RiskService(DownLink(), Contracts(), settings, alerts, NoOrders())
    return risk, alerts


def _buy(quantity: float) -> OrderSpec:
    return OrderSpec(
        symbol="AAPL", action="BUY", quantity=quantity, order_type="LMT", limit_price=190.0
    )


def test_a_risk_service_over_fakes_checks_orders_without_installing_itself() -> None:
    risk, alerts = _risk(max_order_quantity=500)
    received = alerts.subscribe()
    risk.check(_buy(500), AAPL)
    with pytest.raises(RiskRejectedError) as info:
        risk.check(_buy(501), AAPL)
    assert info.value.limit == "max_order_quantity"
    assert risk.rejections == 1
    alert = received.get_nowait()
    assert alert is not None and alert.severity is Severity.WARNING
    assert alert.context["limit"] == "max_order_quantity"
    assert risk.holdings() == []  # never connected: nothing held
    risk.close()


async def test_a_kill_switch_engaged_before_the_first_connect_waits_and_refuses_opening() -> None:
    risk, _ = _risk()
    seen: list[KillSwitchState] = []
    risk.on_kill_switch_change(seen.append)
    state = await risk.kill_switch("before connect")
    assert state.engaged and state.deferred and state.cancels_sent == 0
    with pytest.raises(RiskRejectedError) as info:
        risk.check(_buy(1), AAPL)
    assert info.value.limit == "kill_switch"
    assert not risk.reset_kill_switch().engaged
    risk.check(_buy(1), AAPL)
    assert [s.engaged for s in seen] == [True, False]
    risk.close()


async def test_an_exit_service_over_fakes_installs_into_nothing() -> None:
    exits = ExitService(Contracts(), ConnectorSettings(), AlertBus(), NoOrders(), risk=FlatBook())
    with pytest.raises(InvalidInputError, match="no position"):
        await exits.set_stop_loss("AAPL", price=180.0)
    exits.on_kill_switch(KillSwitchState(engaged=False))  # a reset with no plans: nothing to do
    assert exits.exit_plans() == []
    exits.close()
