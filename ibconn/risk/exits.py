"""Stop-loss and take-profit exits kept in step with the position.

:class:`ExitService` holds one *exit plan* per position (account, contract):
a stop-loss level, a take-profit level, or both. It keeps native orders at
the gateway that carry it out, so they work even when this process does not:

* a STP order (stop loss) and a LMT order (take profit) on the closing side,
  both ``tif=GTC`` and in one OCA group (``ocaType=2``: a fill of one reduces
  the other by the same quantity, with overfill protection);
* each sized to the position: when the position changes (a fill, a manual
  trade, a reconciliation), the working exits are modified to the new size;
  when it changes side they are replaced; when it goes flat they are cancelled
  and the plan ends;
* re-checked after every (re)connect, since positions and orders may have
  changed while the link was down;
* levels given as a price stay there; levels given as a percent follow the
  position's average price (``avg_price``), and the orders are re-priced when
  it moves (a position added to at another price).

Exits are closing orders, so they pass the kill switch; but the kill switch
cancels every working order, exits included, and while it is on the plans
place nothing new. :meth:`~ibconn.risk.service.RiskService.reset_kill_switch`
brings them back (:func:`ibconn.assembly.assemble` subscribes
:meth:`ExitService.on_kill_switch` to the switch's changes). A fill of an
exit changes the position only when the position source reports it: until
then the plan waits, so that an OCA sibling cancelled by TWS is never
re-placed for a position that is already gone.
With the order journal (``docs/journal.md``) every plan is kept in it as it
changes (:class:`~ibconn.risk.ports.ExitPlanStore`): when a connector starts
again, :meth:`ExitService.restore` takes the plans back and the first session
re-arms them once positions are known, adopting the exit orders still working
at TWS by their order reference. Without the journal plans live in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable

from ib_async import IB, Contract

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.session import Service, Session
from ibconn.contracts.resolver import ContractLike
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger
from ibconn.core.tasks import ServiceTasks
from ibconn.errors import IBConnError, InvalidInputError
from ibconn.orders.models import (
    OrderAction,
    OrderSpec,
    OrderStatus,
    OrderType,
    OrderUpdate,
    TimeInForce,
    UpdateKind,
)
from ibconn.risk.exit_plans import STOP, TAKE, ExitLevel, ExitPlan, Plan
from ibconn.risk.limits import EPS
from ibconn.risk.models import Holding, KillSwitchState, SavedExitPlan
from ibconn.risk.ports import (
    Contracts,
    ExitOrders,
    ExitPlanStore,
    PositionChange,
    PositionUpdates,
    RiskView,
)

__all__ = ["ExitLevel", "ExitPlan", "ExitService"]

_log = get_logger("orders")
_SETTLE = 2.0  # seconds a plan waits for the position to reflect an exit's fill


class ExitService(Service):
    """Stop-loss and take-profit orders sized to each position (see the module docstring).

    Built by :func:`ibconn.assembly.assemble`, which also attaches the position
    service (:meth:`attach_positions`) and subscribes :meth:`on_kill_switch`.
    """

    name = "exits"
    order = 50

    def __init__(
        self,
        contracts: Contracts,
        settings: ConnectorSettings,
        alerts: AlertBus,
        orders: ExitOrders,
        *,
        risk: RiskView,
    ) -> None:
        self._contracts = contracts
        self._settings = settings
        self._alerts = alerts
        self._orders = orders
        self._risk = risk
        self._plans: dict[tuple[str, int], Plan] = {}
        self._groups = itertools.count(1)
        self._tasks = ServiceTasks("orders")  # exits log with the orders
        self._installed: IB | None = None
        self._position_updates: PositionUpdates | None = None
        self._started = False
        self._store: ExitPlanStore | None = None
        self._saved: dict[tuple[str, int], SavedExitPlan] = {}  # as last given to the store
        self._restored: list[SavedExitPlan] = []  # to re-arm in the first session

    # -- public ------------------------------------------------------------------------

    async def set_stop_loss(
        self,
        symbol: ContractLike,
        *,
        price: float | None = None,
        percent: float | None = None,
        account: str | None = None,
    ) -> ExitPlan:
        """Protect the position in ``symbol`` with a stop at ``price`` or ``percent`` below
        (long) / above (short) its average price; returns once the order is working."""
        return await self._set(symbol, STOP, price, percent, account)

    async def set_take_profit(
        self,
        symbol: ContractLike,
        *,
        price: float | None = None,
        percent: float | None = None,
        account: str | None = None,
    ) -> ExitPlan:
        """Take profit on the position in ``symbol`` with a limit at ``price`` or ``percent``
        above (long) / below (short) its average price; returns once the order is working."""
        return await self._set(symbol, TAKE, price, percent, account)

    async def remove_exits(self, symbol: ContractLike, *, account: str | None = None) -> None:
        """Cancel the exits of the position in ``symbol`` and forget its plan."""
        resolved = await self._contracts.resolve(symbol)
        key = (account or self._risk_account(), resolved.con_id)
        plan = self._plans.pop(key, None)
        self._restored = [p for p in self._restored if (p.account, p.con_id) != key]
        self._forget(key)
        if plan is None:
            return
        async with plan.lock:
            await self._cancel_all(plan)

    def exit_plans(self) -> list[ExitPlan]:
        """Every exit plan in force."""
        return [plan.snapshot() for plan in self._plans.values()]

    # -- setting a level -------------------------------------------------------------

    async def _set(
        self,
        symbol: ContractLike,
        kind: str,
        price: float | None,
        percent: float | None,
        account: str | None,
    ) -> ExitPlan:
        name = "set_stop_loss" if kind == STOP else "set_take_profit"
        if (price is None) == (percent is None):
            raise InvalidInputError(f"{name}() takes exactly one of price= and percent=")
        if price is not None and not price > 0:
            raise InvalidInputError(f"{name}(price={price!r}): a price must be > 0")
        if percent is not None and not 0 < percent < 100:
            raise InvalidInputError(f"{name}(percent={percent!r}): allowed is > 0 and < 100")
        resolved = await self._contracts.resolve(symbol)
        acct = account or self._risk_account()
        position = self._position(acct, resolved.con_id)
        if abs(position) <= EPS:
            raise InvalidInputError(
                f"{name}(): there is no position in {resolved.display_name} ({acct}) to protect"
            )
        side = OrderAction.BUY if position > 0 else OrderAction.SELL
        target = ExitLevel(price, percent).target(
            side, self._avg_price(acct, resolved.con_id), kind
        )
        # The position may be counted from a fill still waiting for its commission report,
        # before anything marks it: then a price is fetched, never the check skipped.
        mark = await self._risk.reference_price(resolved) if target is not None else None
        if target is not None and mark is None:
            raise InvalidInputError(
                f"{name}(): no market price of {resolved.display_name} to check {target:g} "
                "against; subscribe its market data or try again when it trades"
            )
        if mark is not None and target is not None:
            # A long's stop below the market and its take profit above (a short: the reverse);
            # otherwise the order would trigger or fill at once.
            below = (kind == STOP) == (side is OrderAction.BUY)
            if (target >= mark) if below else (target <= mark):
                where = "below" if below else "above"
                raise InvalidInputError(
                    f"{name}(): {target:g} is not {where} the market price {mark:g} of "
                    f"{resolved.display_name} for a {'long' if position > 0 else 'short'} "
                    f"position of {position:g}; it would execute at once"
                )
        key = (acct, resolved.con_id)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = Plan(acct, resolved)
        plan.levels[kind] = ExitLevel(price=price, percent=percent)
        plan.failure = None
        self._start_tasks()
        await self._reconcile(plan, raise_errors=True)
        return plan.snapshot()

    # -- keeping the orders in step ------------------------------------------------------

    def _risk_account(self) -> str:
        return self._risk.default_account()

    def _holdings(self) -> Iterable[Holding]:
        return self._risk.holdings()

    def _position(self, account: str, con_id: int) -> float:
        return sum(
            h.quantity for h in self._holdings() if h.account == account and h.con_id == con_id
        )

    def _avg_price(self, account: str, con_id: int) -> float | None:
        for h in self._holdings():
            if h.account == account and h.con_id == con_id and h.quantity:
                return h.avg_price
        return None

    def schedule(self, key: tuple[str, int] | None = None) -> None:
        """Re-check one plan (or every plan) soon: positions or orders changed."""
        if self._tasks.closed:
            return
        plans = [self._plans[key]] if key is not None and key in self._plans else []
        if key is None:
            plans = list(self._plans.values())
        for plan in plans:
            if plan.lock.locked():
                plan.dirty = True
            else:
                self._tasks.spawn(self._reconcile(plan), f"ibconn-exits-{plan.resolved.con_id}")

    async def _reconcile(self, plan: Plan, *, raise_errors: bool = False) -> None:
        async with plan.lock:
            while True:
                plan.dirty = False
                try:
                    await self._sync(plan)
                except IBConnError as exc:
                    if plan.dirty and not raise_errors:
                        continue  # something changed meanwhile: look again
                    plan.failure = str(exc)
                    self._alerts.publish(
                        Severity.ERROR,
                        "orders",
                        f"exits of {plan.resolved.display_name} ({plan.account}) could not be "
                        f"kept in step with the position: {exc}",
                        coalesce_key=("exits_failed", plan.key),
                        symbol=plan.resolved.display_name,
                    )
                    if raise_errors:
                        raise
                    return
                finally:
                    self._save(plan)
                if not plan.dirty:
                    return

    async def _sync(self, plan: Plan) -> None:
        """Make the working exits match the position (the only place that sends them)."""
        if self._plans.get(plan.key) is not plan:
            return  # removed meanwhile
        position = self._position(plan.account, plan.resolved.con_id)
        loop = asyncio.get_running_loop()
        if plan.expected is not None:
            waited = loop.time() - plan.expected_since
            if abs(position - plan.expected) > EPS and waited < _SETTLE:
                loop.call_later(_SETTLE - waited + 0.01, self.schedule, plan.key)
                return  # an exit filled; the position source has not caught up yet
            plan.expected = None
        plan.position = position
        if abs(position) <= EPS:
            await self._cancel_all(plan)
            self._plans.pop(plan.key, None)
            self._forget(plan.key)
            _log.info("exits of {} removed: the position is flat", plan.resolved.display_name)
            return
        if self._risk.kill_switch_state.engaged:
            # The kill switch cancelled them; reset_kill_switch() brings them back.
            plan.failure = "the kill switch is on: exits are placed again once it is reset"
            return
        side = OrderAction.BUY if position > 0 else OrderAction.SELL
        closing = side.opposite
        avg = self._avg_price(plan.account, plan.resolved.con_id)
        wait = self._settings.resync_timeout
        live = {
            kind: handle
            for kind, handle in plan.orders.items()
            if not self._orders.get_order_status(handle).is_done
        }
        # A leg that works on the wrong side (the position flipped) goes, with its group.
        if any(self._orders.get_order_status(h).action is not closing for h in live.values()):
            await self._cancel_all(plan)
            live = {}
        if not live:
            plan.group = self._new_group(plan)
        for kind, level in plan.levels.items():
            target = level.target(side, avg, kind)
            if target is None:
                raise InvalidInputError(
                    f"no average price of {plan.resolved.display_name} to place the "
                    f"{kind.replace('_', ' ')} {level.percent}% away from"
                )
            handle = live.get(kind)
            if handle is not None and self._orders.get_order_status(handle).is_done:
                handle = None  # it ended while the other leg was being changed
                if not any(
                    not self._orders.get_order_status(h).is_done for h in plan.orders.values()
                ):
                    plan.group = self._new_group(plan)
            if handle is None:
                handle = await self._orders.place_order(
                    self._spec(plan, kind, closing, abs(position), target),
                    wait_timeout=wait,
                )
                plan.orders[kind] = handle
            else:
                snap = self._orders.get_order_status(handle)
                quantity = snap.filled + abs(position)
                current = snap.stop_price if kind == STOP else snap.limit_price
                moved = current is None or abs(current - target) > _price_tolerance(plan)
                if abs(snap.quantity - quantity) > EPS or moved:
                    await self._orders.modify_order(
                        handle,
                        quantity=quantity,
                        stop_price=target if moved and kind == STOP else None,
                        limit_price=target if moved and kind != STOP else None,
                        round_prices=True,
                        wait_timeout=wait,
                    )
            snap = self._orders.get_order_status(handle)
            order_price = snap.stop_price if kind == STOP else snap.limit_price
            plan.levels[kind] = ExitLevel(level.price, level.percent, order_price)
        plan.failure = None

    def _new_group(self, plan: Plan) -> str:
        # A group some member of which has filled may refuse new members: a fresh name.
        return f"ibc-exit-{plan.account}-{plan.resolved.con_id}-{next(self._groups)}"

    def _spec(
        self, plan: Plan, kind: str, action: OrderAction, quantity: float, price: float
    ) -> OrderSpec:
        common: dict[str, object] = {
            "symbol": plan.resolved.contract,
            "action": action,
            "quantity": quantity,
            "tif": TimeInForce.GTC,
            "account": plan.account or None,
            "oca_group": plan.group,
            "oca_type": 2,
            "round_prices": True,
        }
        if kind == STOP:
            return OrderSpec(order_type=OrderType.STOP, stop_price=price, tag="exit-sl", **common)
        return OrderSpec(order_type=OrderType.LIMIT, limit_price=price, tag="exit-tp", **common)

    async def _cancel_all(self, plan: Plan) -> None:
        for kind, handle in list(plan.orders.items()):
            if not self._orders.get_order_status(handle).is_done:
                with contextlib.suppress(IBConnError):
                    await self._orders.cancel_order(
                        handle, wait_timeout=self._settings.resync_timeout
                    )
            plan.orders.pop(kind, None)

    # -- kept across runs (the order journal) ---------------------------------------------

    def set_plan_store(self, store: ExitPlanStore | None) -> None:
        """Keep every plan in ``store`` as it changes (the composition root only)."""
        self._store = store

    def restore(self, plans: Iterable[SavedExitPlan]) -> None:
        """Take the plans an earlier run left; the first session re-arms them."""
        for saved in plans:
            self._saved[(saved.account, saved.con_id)] = saved
            self._restored.append(saved)

    def _save(self, plan: Plan) -> None:
        if self._store is None or self._plans.get(plan.key) is not plan:
            return
        saved = plan.saved()
        if self._saved.get(plan.key) != saved:
            self._saved[plan.key] = saved
            self._store.save_exit_plan(saved)

    def _forget(self, key: tuple[str, int]) -> None:
        if self._saved.pop(key, None) is not None and self._store is not None:
            self._store.remove_exit_plan(*key)

    async def _rearm(self) -> None:
        """Turn the restored plans into working ones (positions are known by now)."""
        restored, self._restored = self._restored, []
        for saved in restored:
            key = (saved.account, saved.con_id)
            if key in self._plans:
                continue  # set again in this run meanwhile
            try:
                resolved = await self._contracts.resolve(Contract(conId=saved.con_id))
            except IBConnError as exc:
                _log.warning("exit plan of {} not restored: {}", saved.symbol, exc)
                continue
            plan = Plan(saved.account, resolved)
            for kind, price, percent in (
                (STOP, saved.stop_price, saved.stop_percent),
                (TAKE, saved.take_price, saved.take_percent),
            ):
                if price is not None or percent is not None:
                    plan.levels[kind] = ExitLevel(price, percent)
            plan.group = saved.oca_group
            for kind, ref in ((STOP, saved.stop_order_ref), (TAKE, saved.take_profit_order_ref)):
                with contextlib.suppress(IBConnError):  # unknown: it ended while away
                    if ref is not None and not self._orders.get_order_status(ref).is_done:
                        plan.orders[kind] = self._orders.handle(ref)
            self._plans[key] = plan
            _log.info(
                "exit plan of {} ({}) restored from the journal: {}",
                saved.symbol, saved.account, ", ".join(plan.levels),
            )  # fmt: skip
            self.schedule(key)

    # -- what triggers a re-check ----------------------------------------------------------

    def _on_update(self, update: OrderUpdate) -> None:
        for plan in self._plans.values():
            if update.order_ref not in plan.refs():
                continue
            if update.kind is UpdateKind.FILL and update.fill is not None:
                # The position moves by this fill once its source reports it.
                base = plan.expected if plan.expected is not None else plan.position
                plan.expected = base + update.fill.signed_quantity
                plan.expected_since = asyncio.get_running_loop().time()
            elif update.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.LOST):
                self.schedule(plan.key)  # cancelled by someone else: put it back
            return

    def _on_position(self, *_: object) -> None:
        self._tasks.guard("position", self.schedule)

    def on_kill_switch(self, state: KillSwitchState) -> None:
        """The kill switch was engaged or reset (on a reset the exits come back)."""
        if not state.engaged:
            self.schedule()

    # -- Service hooks ---------------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Re-check every plan once connected (orders and positions are resynced by now)."""
        if self._installed is not ib:
            if self._installed is not None:
                self._installed.positionEvent -= self._on_position
            ib.positionEvent += self._on_position
            self._installed = ib
        self._start_tasks()
        self.schedule()  # the orders wait (wait_timeout) for the state to say connected
        if self._restored:
            self._tasks.spawn(self._rearm(), "ibconn-exits-restore")

    def attach_positions(self, updates: PositionUpdates) -> None:
        """Follow the position service's change stream (``updates()`` opens one).

        Called by :func:`ibconn.assembly.assemble` before the first connect.
        """
        self._position_updates = updates

    def _on_position_update(self, position: PositionChange) -> None:
        if position.source != "mark":  # a mark moves no quantity
            self.schedule((position.account, position.con_id))

    def _start_tasks(self) -> None:
        tasks = self._tasks
        if self._started or tasks.closed:
            return
        self._started = True
        # a reader that fell behind a burst re-checks every plan
        tasks.spawn(
            tasks.follow(self._orders.order_updates, self._on_update, self.schedule),
            "ibconn-exits-orders",
        )
        if self._position_updates is not None:
            tasks.spawn(
                tasks.follow(self._position_updates, self._on_position_update, self.schedule),
                "ibconn-exits-positions",
            )

    def close(self) -> None:
        """Stop following positions and orders (the connector is closed)."""
        self._tasks.close()

    def __repr__(self) -> str:
        return f"<ExitService plans={len(self._plans)}>"


def _price_tolerance(plan: Plan) -> float:
    """More than the rounding to the tick, less than one tick: a real move of the level."""
    tick = plan.resolved.min_tick
    return tick * 0.75 if tick > 0 else 1e-6
