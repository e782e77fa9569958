"""The risk service: the pre-trade check, the kill switch, exposure and the daily loss.

:class:`RiskService` is installed as the order service's pre-trade check
(:class:`~ibconn.orders.service.PreTradeCheck`, by :func:`ibconn.assembly.assemble`):
every new order and every change passes :meth:`RiskService.check`
synchronously, right before ibconn hands it to ib_async and the pacer, so
nothing can slip in between the check and the send. A refusal raises
:class:`~ibconn.errors.RiskRejectedError` naming the limit (``error.limit``,
one of :class:`~ibconn.risk.models.RiskLimit`), its value and the order's
value, and publishes a ``risk`` alert.

The service is a facade over its parts, each in its own module:

- the limits, pure functions (:mod:`ibconn.risk.limits`);
- what they read of the book: positions, working orders, prices
  (:mod:`ibconn.risk.book`), and the exposure built from it
  (:mod:`ibconn.risk.exposure`);
- the kill switch (:mod:`ibconn.risk.kill_switch`): on, it cancels every
  working order and refuses orders that would open or increase a position;
- the daily P&L and loss limit (:mod:`ibconn.risk.daily_loss`): a loss beyond
  ``risk.max_daily_loss`` trips the kill switch once per trading day, and
  while it lasts opening orders are refused even after a reset of the switch;
- the exposure monitor (:mod:`ibconn.risk.monitor`);
- the cap on new orders per second (:mod:`ibconn.risk.order_rate`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ib_async import IB

from ibconn.config.settings import ConnectorSettings, RiskSettings
from ibconn.connection.session import (
    ConnectionEvent,
    ConnectionState,
    Service,
    Session,
    move_handlers,
)
from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.core.numbers import number_or_none
from ibconn.core.streams import Subscription
from ibconn.core.tasks import ServiceTasks
from ibconn.errors import IBConnError
from ibconn.orders.events import OrderEvents
from ibconn.orders.models import OrderSnapshot, OrderSpec
from ibconn.risk.book import RiskBook
from ibconn.risk.daily_loss import DailyPnl
from ibconn.risk.kill_switch import KillSwitch
from ibconn.risk.limits import check_order, order_price
from ibconn.risk.models import Exposure, Holding, KillSwitchState
from ibconn.risk.monitor import ExposureMonitor
from ibconn.risk.order_rate import OrderRate
from ibconn.risk.ports import Contracts, Link, MarketLines, OrderBook, PositionUpdates

__all__ = ["RiskService"]

_log = get_logger("risk")


class RiskService(Service):
    """Pre-trade limits, kill switch, exposure and daily loss (see the module docstring).

    Built by :func:`ibconn.assembly.assemble`, which also installs it as the
    order service's pre-trade check and attaches the position service
    (:meth:`attach_positions`).
    """

    name = "risk"
    order = 40

    def __init__(
        self,
        supervisor: Link,
        contracts: Contracts,
        settings: ConnectorSettings,
        alerts: AlertBus,
        orders: OrderBook,
        *,
        market_data: MarketLines | None = None,
        events: OrderEvents | None = None,
    ) -> None:
        self._link = supervisor
        self._settings = settings
        self._limits = settings.risk
        self._alerts = alerts
        self._orders = orders
        self._market_data = market_data
        self._tasks = ServiceTasks("risk")
        self._book = RiskBook(supervisor, contracts, settings, orders, market_data)
        self._position_updates: PositionUpdates | None = None
        self._kill = KillSwitch(
            supervisor, orders, settings, alerts, on_change=self.wake, events=events
        )
        self._daily = DailyPnl(settings.risk)
        self._monitor = ExposureMonitor(
            self._book,
            self._daily,
            self._kill,
            settings.risk,
            alerts=alerts,
            tasks=self._tasks,
            trip=self.kill_switch,
        )
        rate = settings.risk.max_orders_per_second
        self._order_rate = OrderRate(rate) if rate is not None else None
        self._installed: IB | None = None
        self._started = False
        self._rejections = 0

    # -- wiring (ibconn/assembly.py) -----------------------------------------------------

    def attach_positions(
        self,
        provider: Callable[[], Iterable[Holding]] | None,
        updates: PositionUpdates | None = None,
    ) -> None:
        """Read positions from ``provider`` (the position service), not ib_async's portfolio;
        ``updates`` opens its change stream, which wakes the monitor (marks, fills).

        Called by :func:`ibconn.assembly.assemble` before the first connect.
        """
        self._book.positions = provider
        self._position_updates = updates
        self.wake()

    def on_kill_switch_change(self, callback: Callable[[KillSwitchState], None]) -> None:
        """Call ``callback(state)`` whenever the kill switch is engaged or reset."""
        self._kill.add_listener(callback)

    @property
    def limits(self) -> RiskSettings:
        """The limits in force (``settings.risk``)."""
        return self._limits

    @property
    def rejections(self) -> int:
        """Orders and changes refused by a limit since the connector was created."""
        return self._rejections

    # -- the pre-trade check -----------------------------------------------------------

    def needs_prepare(self, spec: OrderSpec, resolved: ResolvedContract) -> bool:
        """Whether :meth:`prepare` has anything to do for ``spec`` (checked on every order)."""
        if not self._book.knows(resolved):
            return True
        limits = self._limits
        if limits.max_order_notional is None and limits.max_gross_exposure is None:
            return False
        return order_price(spec) is None and self.market_price(resolved.con_id) is None

    async def prepare(self, spec: OrderSpec, resolved: ResolvedContract) -> None:
        """Fetch a reference price when a money limit needs one and none is at hand."""
        self._book.remember(resolved)
        limits = self._limits
        if limits.max_order_notional is None and limits.max_gross_exposure is None:
            return
        if order_price(spec) is None:
            await self.reference_price(resolved)

    async def reference_price(self, resolved: ResolvedContract) -> float | None:
        """:meth:`market_price`, else a quote fetched now (and kept for a minute's checks);
        ``None`` when no price can be had."""
        price = self.market_price(resolved.con_id)
        if price is not None or self._market_data is None:
            return price
        try:
            timeout = min(self._settings.market_data_timeout, 5.0)
            quote = await self._market_data.quote(resolved.contract, timeout=timeout)
        except (IBConnError, TimeoutError) as exc:
            _log.info("no reference price for {}: {}", resolved.display_name, exc)
            return None
        price = number_or_none(getattr(quote, "last", None)) or number_or_none(quote.mid)
        if price is None or price <= 0:
            return None
        self._book.remember_price(resolved.con_id, price)
        return price

    def check(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        replaces: OrderSnapshot | None = None,
        parent: OrderSnapshot | None = None,
    ) -> None:
        """Raise :class:`~ibconn.errors.RiskRejectedError` if ``spec`` breaks a limit
        (:func:`ibconn.risk.limits.check_order`).

        ``replaces`` is the working order a modification changes (it is left
        out of the worst case); ``parent`` is the entry of a bracket child
        (the child is covered by the entry's check).
        """
        self._book.remember(resolved)
        refusal = check_order(
            spec,
            resolved,
            self._limits,
            self._book,
            kill=self._kill.state,
            daily_loss=self._daily.loss,
            readonly=self._settings.readonly,
            replaces=replaces,
            parent=parent,
            rate=self._order_rate,
        )
        if refusal is None:
            return
        self._rejections += 1
        _log.warning("risk: {}", refusal)
        self._alerts.publish(
            Severity.WARNING,
            "risk",
            str(refusal),
            coalesce_key=("risk_rejected", refusal.limit),
            limit=refusal.limit,
            limit_value=refusal.limit_value,
            order_value=refusal.order_value,
        )
        raise refusal

    # -- what the checks read ----------------------------------------------------------

    def default_account(self) -> str:
        """The account orders go to when they name none: the setting, else the first managed."""
        return self._book.default_account()

    def holdings(self) -> list[Holding]:
        """The positions the limits see: the position service's, else ib_async's portfolio."""
        return self._book.holdings()

    def position(self, account: str, con_id: int) -> float:
        """The quantity held in ``con_id`` by ``account`` (0 when none)."""
        return self._book.position(account, con_id)

    def market_price(self, con_id: int, holdings: Iterable[Holding] | None = None) -> float | None:
        """The current price of ``con_id``: a position's mark (the position service marks
        from market data when subscribed, else TWS's portfolio), the connector's live
        market data line, or a price fetched for a check within the last minute."""
        return self._book.market_price(con_id, holdings)

    # -- exposure and daily loss -------------------------------------------------------

    def exposure(self) -> Exposure:
        """The exposure of the book now (computed on the spot, no alerts)."""
        return self._monitor.exposure()

    def exposure_updates(self, capacity: int | None = None) -> Subscription[Exposure]:
        """A stream of :class:`Exposure` snapshots whenever a figure changes (latest wins)."""
        return self._monitor.updates(capacity)

    def evaluate(self) -> Exposure:
        """Recompute exposure and daily P&L now, alert on thresholds, trip on the daily loss.

        The monitor calls this every ``risk.exposure_interval`` seconds and
        after order and position changes; call it to force an update.
        """
        return self._monitor.evaluate()

    def wake(self) -> None:
        """Ask the monitor to re-evaluate soon (position and price changes call this)."""
        self._monitor.wake()

    # -- the kill switch ---------------------------------------------------------------

    @property
    def kill_switch_state(self) -> KillSwitchState:
        """Where the kill switch stands."""
        return self._kill.state

    async def kill_switch(
        self,
        reason: str,
        *,
        global_cancel: bool | None = None,
        timeout: float | None = None,
    ) -> KillSwitchState:
        """Engage the kill switch: cancel every working order first, refuse opening orders.

        ``global_cancel`` (default ``risk.kill_switch_global_cancel``) also sends
        TWS's global cancel. Returns once every order it cancelled is confirmed
        done or ``timeout`` (default ``order_ack_timeout``) has passed; with
        the link down it returns at once and the cancels go out when the link
        is back. The switch stays on until :meth:`reset_kill_switch`.
        """
        return await self._kill.engage(reason, global_cancel=global_cancel, timeout=timeout)

    def reset_kill_switch(self) -> KillSwitchState:
        """Turn the kill switch off: orders that open positions pass again (limits permitting)."""
        return self._kill.reset()

    def restore_kill_switch(self, state: KillSwitchState) -> None:
        """Take the kill switch state an earlier run left (the journal, before the first
        connect): an engaged switch stays engaged, with its reason and time."""
        self._kill.restore(state)

    # -- Service hooks -----------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Re-send the kill switch's cancels (the orders are resynced by now); start the monitor."""
        if self._installed is not ib:
            move_handlers(
                self._installed,
                ib,
                [
                    ("positionEvent", self._on_book_event),
                    ("updatePortfolioEvent", self._on_book_event),
                ],
            )
            self._installed = ib
        self._kill.resend()
        self._start_tasks()
        self.wake()

    async def on_session_lost(self, reason: str) -> None:
        """Nothing is lost: the state is ibconn's own; the cancels wait for the next session."""
        self._kill.link_lost()

    def _on_book_event(self, *_: object) -> None:
        self.wake()

    def _start_tasks(self) -> None:
        tasks = self._tasks
        if self._started or tasks.closed:
            return
        self._started = True
        tasks.spawn(self._monitor.run(), "ibconn-risk-monitor")
        # order and position changes wake the monitor; a reader that fell behind does too
        tasks.spawn(
            tasks.follow(self._orders.order_updates, self._on_change, self.wake),
            "ibconn-risk-orders",
        )
        if self._position_updates is not None:
            tasks.spawn(
                tasks.follow(self._position_updates, self._on_change, self.wake),
                "ibconn-risk-positions",
            )
        first = [self._link.events()]  # opened now: no change is missed before the task runs

        def events() -> Subscription[ConnectionEvent]:
            return first.pop() if first else self._link.events()

        tasks.spawn(tasks.follow(events, self._on_connection), "ibconn-risk-connection")

    def _on_change(self, _item: object) -> None:
        self.wake()

    def _on_connection(self, event: ConnectionEvent) -> None:
        if event.state is ConnectionState.CONNECTED and event.previous is ConnectionState.DEGRADED:
            self._kill.resend()  # 1102: the link is back without a new session: cancel again

    def close(self) -> None:
        """Stop the monitor and end the exposure streams (the connector is closed)."""
        self._tasks.close()
        self._monitor.close()

    def __repr__(self) -> str:
        return (
            f"<RiskService kill_switch={'on' if self._kill.state.engaged else 'off'} "
            f"rejections={self._rejections}>"
        )
