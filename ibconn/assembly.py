"""The composition root: every part of a connector, built from its settings in one place.

Nothing else constructs a service or wires one service into another. Each
service receives what it uses as constructor arguments (typed by small
protocols that the consuming package declares), so a test can build one
service over fakes, and an application can inject its own ``IB`` factory
(a subclass, or an instrumented one) with ``IBConnector(ib_factory=...)``.

The supervisor resyncs services by their ``order`` (market data 10, orders 20,
positions 30, risk 40, exits 50), whatever the order they are added in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ib_async import IB

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.supervisor import Supervisor
from ibconn.contracts.resolver import ContractResolver
from ibconn.core.alerts import AlertBus
from ibconn.core.logs import apply_settings as apply_log_settings
from ibconn.journal import OrderJournal, default_journal_path
from ibconn.market_data.service import MarketDataService
from ibconn.orders.event_log import log_order_event
from ibconn.orders.events import OrderEvents
from ibconn.orders.service import OrderService
from ibconn.pacing import Pacer
from ibconn.positions.service import PositionService
from ibconn.risk.exits import ExitService
from ibconn.risk.service import RiskService
from ibconn.wire.ib_compat import check_ib_async

__all__ = ["ConnectorParts", "assemble"]


@dataclass(frozen=True, slots=True)
class ConnectorParts:
    """The parts of one connector, built and wired by :func:`assemble`."""

    settings: ConnectorSettings
    alerts: AlertBus
    pacer: Pacer
    supervisor: Supervisor[Pacer]
    contracts: ContractResolver
    market_data: MarketDataService
    orders: OrderService
    positions: PositionService
    risk: RiskService
    exits: ExitService
    order_events: OrderEvents
    journal: OrderJournal | None


def assemble(settings: ConnectorSettings, *, ib_factory: Callable[[], IB] = IB) -> ConnectorParts:
    """Build every part of a connector from ``settings``; ``ib_factory`` makes its ``IB``."""
    check_ib_async()
    apply_log_settings(  # only what the application asked for: see docs/logging.md
        settings.log_level if "log_level" in settings.model_fields_set else None,
        settings.log_file,
        settings.log_format,
    )
    order_events = OrderEvents()  # the audit tap: the journal and the orders log listen
    order_events.subscribe(log_order_event)  # the orders log category
    alerts = AlertBus(coalesce_window=settings.alert_coalesce_window)
    pacer = Pacer(settings, alerts)
    supervisor = Supervisor(settings, alerts, pacer=pacer, ib_factory=ib_factory)
    contracts = ContractResolver(lambda: supervisor.ib, timeout=settings.market_data_timeout)
    decided_by = {  # what decides an order besides its spec, in every PLACE event
        "readonly": settings.readonly,
        "default_account": settings.account,
        "risk": settings.risk.model_dump(mode="json"),
    }
    orders = OrderService(
        supervisor, contracts, settings, alerts, pacer, events=order_events, decided_by=decided_by
    )
    pacer.on_sent(orders.message_sent)  # which placeOrder messages left ibconn
    pacer.on_dropped(orders.message_dropped)  # and which were dropped unsent
    market_data = MarketDataService(supervisor, contracts, settings, alerts)
    orders.set_quote_source(market_data.quote)  # stops are checked on a quote
    positions = PositionService(
        supervisor, contracts, settings, alerts, orders, market_data=market_data
    )
    risk = RiskService(
        supervisor,
        contracts,
        settings,
        alerts,
        orders,
        market_data=market_data,
        events=order_events,
    )
    orders.set_pre_trade_check(risk)  # every order and change passes the limits
    # limits see ibconn's positions; their changes wake the exposure monitor
    risk.attach_positions(positions.holdings, positions.position_updates)
    exits = ExitService(contracts, settings, alerts, orders, risk=risk)
    exits.attach_positions(positions.position_updates)  # resize on changes
    risk.on_kill_switch_change(exits.on_kill_switch)  # a reset brings the exits back
    journal = None
    if settings.journal:  # kept across runs: order events, the kill switch, the exit plans
        journal = OrderJournal(
            settings.journal_path or default_journal_path(settings.host, settings.port),
            run_id=orders.run_prefix,
            client_id=settings.client_id,
            flush_interval=settings.journal_flush_interval,
            alerts=alerts,
            events=order_events,
            restore_kill_switch=risk.restore_kill_switch,
            restore_exits=exits.restore,
        )
        exits.set_plan_store(journal)
    for service in (orders, market_data, positions, risk, exits):
        supervisor.add_service(service)
    return ConnectorParts(
        settings=settings,
        alerts=alerts,
        pacer=pacer,
        supervisor=supervisor,
        contracts=contracts,
        market_data=market_data,
        orders=orders,
        positions=positions,
        risk=risk,
        exits=exits,
        order_events=order_events,
        journal=journal,
    )
