"""``IBConnector``: the one object an application holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ib_async import IB

from ibconn.assembly import assemble
from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import ConnectionEvent, ConnectionState, Service, Session
from ibconn.connection.supervisor import Supervisor
from ibconn.contracts.resolver import ContractLike, ContractResolver, ResolvedContract
from ibconn.core.alerts import RECENT_ALERTS, Alert, AlertBus
from ibconn.core.arguments import capacity_arg, count_arg, timeout_arg
from ibconn.core.streams import Subscription
from ibconn.errors import CancelNotConfirmedError, ConfigError
from ibconn.journal import OrderJournal
from ibconn.market_data.api import MarketDataMethods
from ibconn.orders.api import OrderMethods
from ibconn.orders.events import OrderEvents
from ibconn.pacing import Pacer
from ibconn.positions.api import PositionMethods
from ibconn.risk.api import RiskMethods
from ibconn.status import ConnectorStatus, build_status
from ibconn.wire.gc_tuning import restore_gc, tune_gc_for_streaming

if TYPE_CHECKING:
    from ibconn.metrics import ConnectorMetrics, MetricsServer

__all__ = ["IBConnector"]


class IBConnector(OrderMethods, MarketDataMethods, PositionMethods, RiskMethods):
    """An asyncio connection to TWS / IB Gateway that stays up by itself.

    Create it with keyword settings (``IBConnector(port=4002, client_id=7)``),
    with a :class:`ConnectorSettings` (``IBConnector(settings=...)``) or from a
    YAML file (``IBConnector.from_config("ibconn.yaml")``), then
    ``await connector.connect()`` or use ``async with``. ``ib_factory`` makes
    the ``ib_async.IB`` the connector drives (default: ``IB``), for tests and
    instrumented subclasses. A supervisor task
    reconnects with backoff when the link drops and resyncs every service
    before the state says connected again.

    The connector never runs an event loop of its own: it only awaits, so it
    works the same in an asyncio application and in Jupyter cells.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        client_id: int | None = None,
        *,
        settings: ConnectorSettings | None = None,
        ib_factory: Callable[[], IB] | None = None,
        **other_settings: Any,
    ) -> None:
        given: dict[str, Any] = {
            key: value
            for key, value in {"host": host, "port": port, "client_id": client_id}.items()
            if value is not None
        }
        given.update(other_settings)
        if settings is not None and given:
            raise ConfigError(
                f"pass either settings=ConnectorSettings(...) or keyword settings, not both "
                f"(got settings and {sorted(given)})",
                key=sorted(given)[0],
                value=given[sorted(given)[0]],
                allowed="settings=... alone, or keyword settings alone",
            )
        parts = assemble(
            settings if settings is not None else ConnectorSettings(**given),
            ib_factory=ib_factory or IB,
        )
        self._settings = parts.settings
        self._alerts = parts.alerts
        self._supervisor = parts.supervisor
        self._contracts = parts.contracts
        self._orders = parts.orders
        self._market_data = parts.market_data
        self._positions = parts.positions
        self._risk = parts.risk
        self._exits = parts.exits
        self._order_events = parts.order_events
        self._journal = parts.journal
        self._gc_tuned = False  # settings.tune_gc applied (see ibconn.wire.gc_tuning)
        self._parts = parts  # read by status()
        self._started: float | None = None  # time.monotonic() of the first connect()
        self._metrics: ConnectorMetrics | None = None  # made by serve_metrics()

    @classmethod
    def from_config(cls, path: str | PathLike[str], **overrides: Any) -> IBConnector:
        """Build a connector from a YAML file's ``ib_connector:`` section.

        Keyword ``overrides`` and ``IBCONN_*`` environment variables take
        precedence over the file.
        """
        return cls(settings=ConnectorSettings.from_yaml(path, **overrides))

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and start the supervisor.

        Makes up to ``reconnect_attempts`` quick tries (backoff from
        ``connect_retry_interval``) and returns once the session is up and every
        service has resynced. Raises :class:`~ibconn.errors.ConnectError`, with
        advice for the cause, when every try failed. Once up, a lost session is
        reconnected forever (CRITICAL alerts meanwhile) until :meth:`disconnect`.
        """
        if self._started is None:
            self._started = time.monotonic()
        if self._journal is not None:  # restores the kill switch and exits before any order
            await self._journal.start()
        try:
            await self._supervisor.start()
        except BaseException:
            if self._journal is not None:  # no writer thread outlives a failed connect
                await self._journal.close()
            raise
        if self._settings.tune_gc and not self._gc_tuned:  # opt-in, process-wide
            tune_gc_for_streaming()
            self._gc_tuned = True

    async def disconnect(self) -> None:
        """Stop the supervisor and close the socket.

        Returns only once the socket is really closed, so connecting again at
        once with the same client id does not hit error 326. Working orders
        stay at the broker unless ``cancel_orders_on_disconnect`` is set; if
        those cancels cannot all be confirmed, the connector still closes and
        then raises :class:`CancelNotConfirmedError`.
        """
        unconfirmed: CancelNotConfirmedError | None = None
        if self._settings.cancel_orders_on_disconnect and self.is_connected:
            try:
                await self._orders.cancel_all_orders()
            except CancelNotConfirmedError as exc:
                unconfirmed = exc
        await self._close()
        if unconfirmed is not None:
            raise unconfirmed

    async def _close(self) -> None:
        if self._metrics is not None:  # the metrics servers stop with the connector
            await self._metrics.close()
        await self._supervisor.stop()
        self._orders.close()  # fills() and order_updates() streams end with the connector
        self._market_data.close()  # market data streams end with the connector
        self._positions.close()  # position_updates() streams too
        self._risk.close()  # the exposure monitor and stream too
        self._exits.close()
        if self._journal is not None:  # everything emitted so far is committed
            await self._journal.close()
        if self._gc_tuned:  # undo settings.tune_gc
            self._gc_tuned = False
            restore_gc()

    async def __aenter__(self) -> IBConnector:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the state is ``CONNECTED`` (see :meth:`Supervisor.wait_connected`)."""
        await self._supervisor.wait_connected(timeout_arg("timeout", timeout))

    # -- state -------------------------------------------------------------------

    @property
    def settings(self) -> ConnectorSettings:
        """The settings this connector runs with (immutable)."""
        return self._settings

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._supervisor.state

    @property
    def is_connected(self) -> bool:
        """``True`` while the state is ``CONNECTED``."""
        return self._supervisor.state is ConnectionState.CONNECTED

    @property
    def session(self) -> Session | None:
        """The current session (generation, accounts, server version), if any."""
        return self._supervisor.session

    @property
    def accounts(self) -> tuple[str, ...]:
        """The managed accounts of the current session (empty while disconnected)."""
        session = self._supervisor.session
        return session.accounts if session is not None else ()

    @property
    def ib(self) -> IB:
        """The underlying ``ib_async.IB`` (an escape hatch).

        It is the same object for the connector's lifetime, but its state is
        cleared on every disconnect; requests made through it directly pass
        the pacer but are neither resubscribed nor resynced by ibconn.
        """
        return self._supervisor.ib

    @property
    def pacer(self) -> Pacer:
        """The pacer: the one door every outgoing message passes (see docs/pacing.md).

        ``pacer.statistics()`` shows queue depth per priority, messages sent in
        the last second, time spent throttled and the historical counters;
        ``pacer.dropped()`` streams the messages dropped unsent on link loss;
        ``with pacer.critical(): ...`` sends a block ahead of everything queued.
        """
        return self._supervisor.pacer

    @property
    def supervisor(self) -> Supervisor[Pacer]:
        """The supervisor (statistics such as ``handler_errors``, ``connect_attempts``)."""
        return self._supervisor

    async def server_time(self, timeout: float | None = None) -> datetime:
        """TWS's clock now (``reqCurrentTime``: whole seconds, UTC), e.g. to measure skew.

        Raises :class:`~ibconn.errors.NotConnectedError` without a session and
        :class:`~ibconn.errors.RequestTimeoutError` when TWS does not answer within
        ``timeout`` (default ``market_data_timeout``).
        """
        wait = timeout_arg("timeout", timeout)
        return await self._supervisor.current_time(
            self._settings.market_data_timeout if wait is None else wait
        )

    def status(self, *, recent_alerts: int = 20) -> ConnectorStatus:
        """One typed, frozen snapshot of the connector: state, session, farms, lines,
        pacer, positions, working orders, P&L, kill switch and the last alerts.

        Read locally (nothing is sent to TWS), cheap enough to call every 250 ms;
        ``status.to_dict()`` gives plain JSON values. Every field: ``docs/status.md``.
        """
        return build_status(
            self._parts,
            started=self._started,
            recent=count_arg("recent_alerts", recent_alerts, high=RECENT_ALERTS),
        )

    async def serve_metrics(self, port: int = 9464, host: str = "127.0.0.1") -> MetricsServer:
        """Serve Prometheus metrics, ``/healthz`` and ``/readyz`` over HTTP (``docs/metrics.md``).

        ``port`` 0 picks a free port (the handle's ``port`` says which); the server runs
        on this event loop until ``await handle.close()`` or the connector closes. Needs
        the ``metrics`` extra (:class:`~ibconn.errors.MissingDependencyError` without it).
        """
        from ibconn.metrics import ConnectorMetrics  # noqa: PLC0415 (the optional extra)

        if self._metrics is None:
            self._metrics = ConnectorMetrics(self)
        return await self._metrics.serve(port, host)

    def connection_events(self, capacity: int | None = None) -> Subscription[ConnectionEvent]:
        """An async iterator of state changes from now on, each with reason and code.

        It never drops an event: a reader more than ``capacity`` events behind
        gets :class:`~ibconn.errors.StreamOverflowError`.
        """
        return self._supervisor.events(capacity_arg("capacity", capacity))

    def alerts(self, capacity: int | None = None) -> Subscription[Alert]:
        """An async iterator of typed alerts from every service, from now on."""
        return self._alerts.subscribe(capacity_arg("capacity", capacity))

    @property
    def order_events(self) -> OrderEvents:
        """The audit tap: every order operation as an :class:`~ibconn.orders.events.OrderEvent`
        (``subscribe(sink)``; the order journal and the ``orders`` log listen)."""
        return self._order_events

    @property
    def journal(self) -> OrderJournal | None:
        """The order journal (``None`` with ``journal: false``); see docs/journal.md."""
        return self._journal

    @property
    def alert_bus(self) -> AlertBus:
        """Where services publish alerts."""
        return self._alerts

    def add_service(self, service: Service) -> None:
        """Register a service whose hooks follow every session change."""
        self._supervisor.add_service(service)

    # -- contracts -----------------------------------------------------------------

    @property
    def contracts(self) -> ContractResolver:
        """The contract resolver and its cache."""
        return self._contracts

    async def resolve(self, instrument: ContractLike) -> ResolvedContract:
        """Qualify a symbol or contract once and return it with its details."""
        return await self._contracts.resolve(instrument)

    def __repr__(self) -> str:
        return (
            f"<IBConnector {self._supervisor.host}:{self._supervisor.port} "
            f"client_id={self._settings.client_id} state={self.state.value}>"
        )
