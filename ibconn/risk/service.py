"""Pre-trade risk, the kill switch, exposure monitoring and the daily loss limit.

:class:`RiskService` is installed as the order service's pre-trade check
(:class:`~ibconn.orders.service.PreTradeCheck`): every new order and every change
passes :meth:`RiskService.check` synchronously, right before ibconn hands it
to ib_async and the pacer, so nothing can slip in between the check and the
send. A refusal raises :class:`~ibconn.errors.RiskRejectedError` naming the
limit (``error.limit``, one of :class:`RiskLimit`), its value and the order's
value, and publishes a ``risk`` alert.

The worst case
--------------
Limits on positions and exposure count what is working: the worst-case long
of an instrument is the position plus every working buy, the worst-case short
the position minus every working sell. Orders of one OCA group count once per
side (the largest), and the exits of a bracket whose entry still works are
left out (they can only close what the entry opens). An order is refused
when it makes its side's worst case exceed the limit; an order that reduces
the worst case always passes, even above a limit (so a position can always be
closed).

The kill switch
---------------
:meth:`RiskService.kill_switch` turns the switch on, sends a cancel for every
working order this connector knows, and TWS's global cancel (with
``risk.kill_switch_global_cancel``), all inside :meth:`Pacer.critical
<ibconn.pacing.Pacer.critical>` so they go out ahead of anything queued. From
then on orders that would open or increase a position are refused (limit
``kill_switch``); orders that close one pass. If the link is down the cancels
cannot go out (the pacer drops what is queued on link loss), so they are sent
again in :meth:`on_session_ready` and when a degraded link comes back (1102),
as long as the switch is on. It stays on until :meth:`reset_kill_switch`.

The daily loss
--------------
The monitor sums realized plus unrealized P&L over all positions (in
``risk.base_currency``) and compares it with its value at the start of the
trading day (``risk.trading_day_start`` in ``risk.timezone``), or at the first
observation of the day when the connector starts later. A loss beyond
``risk.max_daily_loss`` trips the kill switch once per trading day; while the
loss is beyond the limit, orders that open or increase a position are refused
(limit ``max_daily_loss``) even after a reset of the kill switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from ib_async import IB, Order

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
from ibconn.core.streams import Broadcast, OverflowPolicy, Subscription
from ibconn.errors import IBConnError, RiskRejectedError, StreamOverflowError
from ibconn.orders.models import Fill, OrderAction, OrderSnapshot, OrderSpec, OrderType
from ibconn.orders.service import OrderService

if TYPE_CHECKING:
    from ibconn.connection.supervisor import Supervisor
    from ibconn.contracts.resolver import ContractResolver
    from ibconn.market_data.service import MarketDataService

__all__ = [
    "Exposure",
    "Holding",
    "InstrumentExposure",
    "KillSwitchState",
    "RiskLimit",
    "RiskService",
    "trading_day",
]

_log = get_logger("risk")
_EPS = 1e-9
_PRICE_MAX_AGE = 60.0  # seconds a price fetched for a check stays usable


class RiskLimit(enum.StrEnum):
    """The names a :class:`~ibconn.errors.RiskRejectedError` gives in ``limit``."""

    READ_ONLY = "read_only"
    BLOCKED_SYMBOLS = "blocked_symbols"
    ALLOWED_SYMBOLS = "allowed_symbols"
    KILL_SWITCH = "kill_switch"
    MAX_DAILY_LOSS = "max_daily_loss"
    MAX_ORDER_QUANTITY = "max_order_quantity"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_OPEN_ORDERS = "max_open_orders"
    MAX_POSITION = "max_position"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"


# -- models ------------------------------------------------------------------------------


class Holding(Protocol):
    """What the risk service reads of a position (``ibconn.positions.models.Position`` fits)."""

    @property
    def account(self) -> str: ...
    @property
    def con_id(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def quantity(self) -> float: ...
    @property
    def market_price(self) -> float | None: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def currency(self) -> str: ...
    @property
    def unrealized_pnl(self) -> float | None: ...
    @property
    def realized_pnl(self) -> float: ...
    @property
    def avg_price(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class _PortfolioHolding:
    """A position from ib_async's own portfolio (used when no position service is attached)."""

    account: str
    con_id: int
    symbol: str
    quantity: float
    market_price: float | None
    multiplier: float
    currency: str
    unrealized_pnl: float | None
    realized_pnl: float
    avg_price: float | None


def _with_unpublished(
    holdings: Iterable[Holding],
    fills: Sequence[Fill],
    default_account: str,
    contract_of: Callable[[int], ResolvedContract | None],
) -> list[Holding]:
    """``holdings`` plus the fills the position service has not received yet.

    TWS reports an order FILLED before the commission report that releases its
    fill to the fill stream; in between, neither the working orders nor the
    positions would count that quantity, and a pre-trade check would see room
    that is gone.
    """
    out = list(holdings)
    extra: dict[tuple[str, int], list[Fill]] = {}
    for fill in fills:
        if fill.corrects is None:  # a correction re-prices what was counted already
            extra.setdefault((fill.account or default_account, fill.con_id), []).append(fill)
    for i, holding in enumerate(out):
        pending = extra.pop((holding.account, holding.con_id), None)
        if pending is not None:
            out[i] = _adjusted(holding, sum(f.signed_quantity for f in pending))
    for (account, con_id), pending in extra.items():
        first = pending[0]
        resolved = contract_of(con_id)  # an order's contract: resolved before it was placed
        out.append(
            _PortfolioHolding(
                account=account,
                con_id=con_id,
                symbol=resolved.display_name if resolved is not None else first.symbol,
                quantity=sum(f.signed_quantity for f in pending),
                market_price=None,
                multiplier=resolved.multiplier if resolved is not None else 1.0,
                currency=resolved.currency if resolved is not None else "",
                unrealized_pnl=None,
                realized_pnl=0.0,
                avg_price=first.price,
            )
        )
    return out


def _adjusted(holding: Holding, delta: float) -> Holding:
    return _PortfolioHolding(
        account=holding.account,
        con_id=holding.con_id,
        symbol=holding.symbol,
        quantity=holding.quantity + delta,
        market_price=holding.market_price,
        multiplier=holding.multiplier,
        currency=holding.currency,
        unrealized_pnl=holding.unrealized_pnl,
        realized_pnl=holding.realized_pnl,
        avg_price=holding.avg_price,
    )


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    """Where the kill switch stands (``connector.kill_switch_state``).

    ``cancels_sent`` counts the cancel messages sent since it was engaged
    (re-sends after a reconnect included); ``deferred`` says that some could
    not go out because the link was down (they go out when it is back);
    ``still_working`` lists the order references not yet confirmed done when
    :meth:`RiskService.kill_switch` returned.
    """

    engaged: bool
    reason: str = ""
    since: datetime | None = None
    global_cancel: bool = False
    cancels_sent: int = 0
    deferred: bool = False
    still_working: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstrumentExposure:
    """One account's exposure in one instrument; money in the base currency.

    ``worst_long`` is the position plus every working buy, ``worst_short``
    the position minus every working sell (OCA groups counted once).
    ``market_value`` is ``position * price * multiplier * fx_rate`` and
    ``worst_case_exposure`` the same for the larger of the two worst cases;
    both are ``None`` without a price.
    """

    account: str
    con_id: int
    symbol: str
    position: float
    working_buy: float
    working_sell: float
    worst_long: float
    worst_short: float
    price: float | None
    multiplier: float
    currency: str
    fx_rate: float | None
    market_value: float | None
    worst_case_exposure: float | None
    position_limit: float | None

    @property
    def worst_abs(self) -> float:
        """The larger absolute worst-case position."""
        return max(abs(self.worst_long), abs(self.worst_short))


@dataclass(frozen=True, slots=True)
class Exposure:
    """A snapshot of the whole book as the risk service sees it (``connector.exposure()``).

    ``gross_exposure`` sums ``|market_value|``, ``net_exposure`` the signed
    values, ``worst_case_gross`` the worst-case exposures (what the
    ``max_gross_exposure`` limit applies to). ``daily_pnl`` is realized plus
    unrealized since the start of ``trading_day`` (``None`` until known).
    ``utilization`` maps each limit in force to the fraction used (1.0 = at
    the limit; per instrument as ``max_position:<account>:<symbol>``).
    ``unpriced`` names instruments that could not be valued (no price or no
    exchange rate): their exposure is missing from the sums.
    """

    time: datetime
    base_currency: str
    instruments: tuple[InstrumentExposure, ...]
    gross_exposure: float
    net_exposure: float
    worst_case_gross: float
    open_orders: int
    daily_pnl: float | None
    trading_day: date
    kill_switch: bool
    utilization: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    unpriced: tuple[str, ...] = ()

    def instrument(self, symbol: str, account: str | None = None) -> InstrumentExposure | None:
        """The exposure of ``symbol`` (of ``account`` when given), or ``None``."""
        wanted = symbol.strip().upper()
        for item in self.instruments:
            if item.symbol.upper() == wanted and (account is None or item.account == account):
                return item
        return None


@dataclass(frozen=True, slots=True)
class _Working:
    """One working order as the limits count it."""

    ref: str
    account: str
    con_id: int
    action: OrderAction
    remaining: float
    group: str | None
    price: float | None


@dataclass(slots=True)
class _Day:
    """The trading day's P&L baselines."""

    day: date | None = None
    baselines: dict[tuple[str, int], float] = field(default_factory=dict)
    at_start: set[tuple[str, int]] = field(default_factory=set)
    tripped: bool = False


def trading_day(now: datetime, settings: RiskSettings) -> date:
    """The trading day ``now`` belongs to: days start at ``trading_day_start`` in ``timezone``."""
    local = now.astimezone(settings.zone)
    start = settings.trading_day_start
    offset = timedelta(hours=start.hour, minutes=start.minute, seconds=start.second)
    return (local - offset).date()


def _side_totals(orders: Iterable[_Working]) -> tuple[float, float]:
    """Working buys and sells; an OCA group counts its largest order per side once."""
    buys = sells = 0.0
    groups: dict[tuple[str, OrderAction], float] = {}
    for order in orders:
        if order.group is not None:
            key = (order.group, order.action)
            groups[key] = max(groups.get(key, 0.0), order.remaining)
        elif order.action is OrderAction.BUY:
            buys += order.remaining
        else:
            sells += order.remaining
    for (_, action), quantity in groups.items():
        if action is OrderAction.BUY:
            buys += quantity
        else:
            sells += quantity
    return buys, sells


def _names(resolved: ResolvedContract) -> set[str]:
    names = {resolved.symbol, resolved.local_symbol, resolved.display_name, str(resolved.con_id)}
    if resolved.sec_type == "CASH":
        names.add(f"{resolved.symbol}{resolved.currency}")
    return {name.strip().upper() for name in names if name}


def _finite(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if math.isnan(number) or math.isinf(number) or abs(number) >= 1e300:
        return None
    return number


def _money(value: float, currency: str) -> str:
    return f"{value:,.2f} {currency}"


# -- the service ---------------------------------------------------------------------------


class RiskService(Service):
    """Pre-trade limits, kill switch, exposure and daily loss (see the module docstring)."""

    name = "risk"
    order = 40

    def __init__(
        self,
        supervisor: Supervisor,
        contracts: ContractResolver,
        settings: ConnectorSettings,
        alerts: AlertBus,
        orders: OrderService,
        *,
        market_data: MarketDataService | None = None,
    ) -> None:
        self._supervisor = supervisor
        self._contracts = contracts
        self._settings = settings
        self._limits = settings.risk
        self._alerts = alerts
        self._orders = orders
        self._market_data = market_data
        self._positions: Callable[[], Iterable[Holding]] | None = None
        self._position_updates: Callable[[], Subscription[Any]] | None = None
        self._kill = KillSwitchState(engaged=False)
        self._kill_listeners: list[Callable[[KillSwitchState], None]] = []
        self._resolved: dict[int, ResolvedContract] = {}
        self._prices: dict[int, tuple[float, float]] = {}  # con_id -> (price, loop time)
        self._day = _Day()
        self._daily_pnl: float | None = None
        self._levels: dict[str, int] = {}
        self._exposure: Exposure | None = None
        self._exposure_key: tuple[Any, ...] | None = None
        self._broadcast: Broadcast[Exposure] = Broadcast(
            "exposure", capacity=16, policy=OverflowPolicy.CONFLATE
        )
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._installed: IB | None = None
        self._started = False
        self._closed = False
        self._rejections = 0
        orders.set_pre_trade_check(self)

    # -- wiring ------------------------------------------------------------------------

    def attach_positions(
        self,
        provider: Callable[[], Iterable[Holding]] | None,
        updates: Callable[[], Subscription[Any]] | None = None,
    ) -> None:
        """Read positions from ``provider`` (the position service), not ib_async's portfolio;
        ``updates`` opens its change stream, which wakes the monitor (marks, fills)."""
        self._positions = provider
        self._position_updates = updates
        self._wake.set()

    def on_kill_switch_change(self, callback: Callable[[KillSwitchState], None]) -> None:
        """Call ``callback(state)`` whenever the kill switch is engaged or reset."""
        self._kill_listeners.append(callback)

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
        if self._resolved.get(resolved.con_id) is not resolved:
            return True
        limits = self._limits
        if limits.max_order_notional is None and limits.max_gross_exposure is None:
            return False
        return self._order_price(spec) is None and self.market_price(resolved.con_id) is None

    async def prepare(self, spec: OrderSpec, resolved: ResolvedContract) -> None:
        """Fetch a reference price when a money limit needs one and none is at hand."""
        self._resolved[resolved.con_id] = resolved
        limits = self._limits
        if limits.max_order_notional is None and limits.max_gross_exposure is None:
            return
        if self._order_price(spec) is not None or self.market_price(resolved.con_id) is not None:
            return
        if self._market_data is None:
            return
        try:
            timeout = min(self._settings.market_data_timeout, 5.0)
            quote = await self._market_data.quote(resolved.contract, timeout=timeout)
        except (IBConnError, TimeoutError) as exc:
            _log.info("no reference price for {}: {}", resolved.display_name, exc)
            return
        price = _finite(getattr(quote, "last", None)) or _finite(getattr(quote, "mid", None))
        if price is not None and price > 0:
            self._prices[resolved.con_id] = (price, asyncio.get_running_loop().time())

    def check(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        *,
        replaces: OrderSnapshot | None = None,
        parent: OrderSnapshot | None = None,
    ) -> None:
        """Raise :class:`RiskRejectedError` if ``spec`` breaks a limit (see the module docstring).

        ``replaces`` is the working order a modification changes (it is left
        out of the worst case); ``parent`` is the entry of a bracket child
        (the child is covered by the entry's check).
        """
        self._resolved[resolved.con_id] = resolved
        try:
            self._check(spec, resolved, replaces, parent)
        except RiskRejectedError as exc:
            self._rejections += 1
            _log.warning("risk: {}", exc)
            self._alerts.publish(
                Severity.WARNING,
                "risk",
                str(exc),
                coalesce_key=("risk_rejected", exc.limit),
                limit=exc.limit,
                limit_value=exc.limit_value,
                order_value=exc.order_value,
            )
            raise

    def _check(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        replaces: OrderSnapshot | None,
        parent: OrderSnapshot | None,
    ) -> None:
        limits = self._limits
        what = f"{spec.action.value} {spec.quantity:g} {resolved.display_name}"
        if limits.read_only or self._settings.readonly:
            setting = "risk.read_only" if limits.read_only else "readonly"
            raise _reject(
                RiskLimit.READ_ONLY,
                True,
                what,
                f"{what} refused: read-only mode ({setting}) refuses every order",
            )
        by_name = limits.blocked_symbols or limits.allowed_symbols or limits.max_position_per_symbol
        names = _names(resolved) if by_name else set()
        blocked = names & set(limits.blocked_symbols)
        if blocked:
            raise _reject(
                RiskLimit.BLOCKED_SYMBOLS,
                limits.blocked_symbols,
                resolved.display_name,
                f"{what} refused: {sorted(blocked)[0]} is in risk.blocked_symbols",
            )
        if limits.allowed_symbols and not names & set(limits.allowed_symbols):
            raise _reject(
                RiskLimit.ALLOWED_SYMBOLS,
                limits.allowed_symbols,
                resolved.display_name,
                f"{what} refused: {resolved.display_name} is not in risk.allowed_symbols "
                f"({', '.join(limits.allowed_symbols)})",
            )
        if parent is not None:
            return  # a bracket exit: it can only close what its entry (checked) opens
        position_limit = self._position_limit(resolved, names)
        if (
            not self._kill.engaged
            and limits.max_daily_loss is None
            and position_limit is None
            and limits.max_gross_exposure is None
        ):
            # Nothing below reads the worst-case position (positions, working orders):
            # skip building it, which is most of the check's cost on the order path.
            self._check_order_size(spec, resolved, what, replaces)
            return
        account = spec.account or (replaces.account if replaces is not None else "")
        account = account or self.default_account()
        con_id = resolved.con_id
        working = self._working(exclude=replaces.order_ref if replaces is not None else None)
        same = [w for w in working if w.account == account and w.con_id == con_id]
        position = self.position(account, con_id)
        remaining = spec.quantity - (replaces.filled if replaces is not None else 0.0)
        remaining = max(0.0, remaining)
        new = _Working(
            "(new)",
            account,
            con_id,
            spec.action,
            remaining,
            spec.oca_group,
            self._order_price(spec),
        )
        buys0, sells0 = _side_totals(same)
        buys1, sells1 = _side_totals([*same, new])
        long0, short0 = position + buys0, position - sells0
        long1, short1 = position + buys1, position - sells1
        if spec.action is OrderAction.BUY:
            increases = long1 > long0 + _EPS and long1 > _EPS
        else:
            increases = short1 < short0 - _EPS and short1 < -_EPS
        shrinking = replaces is not None and remaining <= replaces.remaining + _EPS
        opening = increases and not shrinking
        if self._kill.engaged and opening:
            raise _reject(
                RiskLimit.KILL_SWITCH,
                self._kill.reason,
                what,
                f"{what} refused: the kill switch is on ({self._kill.reason}); only orders "
                "that close a position pass until reset_kill_switch()",
            )
        loss = self._daily_loss()
        if limits.max_daily_loss is not None and opening and loss > limits.max_daily_loss:
            raise _reject(
                RiskLimit.MAX_DAILY_LOSS,
                limits.max_daily_loss,
                loss,
                f"{what} refused: the daily loss {_money(loss, limits.base_currency)} is beyond "
                f"risk.max_daily_loss {_money(limits.max_daily_loss, limits.base_currency)}; "
                "only orders that close a position pass today",
            )
        self._check_order_size(spec, resolved, what, replaces)
        if position_limit is not None and increases:
            worst = long1 if spec.action is OrderAction.BUY else short1
            if abs(worst) > position_limit + _EPS:
                raise _reject(
                    RiskLimit.MAX_POSITION,
                    position_limit,
                    worst,
                    f"{what} refused: the worst-case position in {resolved.display_name} "
                    f"({account}) would be {worst:g} (position {position:g}, working buys "
                    f"{buys0:g}, working sells {sells0:g}), beyond max_position "
                    f"{position_limit:g}",
                )
        if limits.max_gross_exposure is not None and increases:
            self._check_gross(
                spec,
                resolved,
                what,
                working=working,
                account=account,
                worst=(long0, short0, long1, short1),
            )

    def _check_order_size(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        what: str,
        replaces: OrderSnapshot | None,
    ) -> None:
        """The limits on the order itself: quantity, notional and the open-order count."""
        limits = self._limits
        remaining = spec.quantity - (replaces.filled if replaces is not None else 0.0)
        remaining = max(0.0, remaining)
        if limits.max_order_quantity is not None and spec.quantity > limits.max_order_quantity:
            raise _reject(
                RiskLimit.MAX_ORDER_QUANTITY,
                limits.max_order_quantity,
                spec.quantity,
                f"{what} refused: quantity {spec.quantity:g} is above risk.max_order_quantity "
                f"{limits.max_order_quantity:g}",
            )
        if limits.max_order_notional is not None:
            self._check_notional(spec, resolved, what, remaining)
        if limits.max_open_orders is None or replaces is not None:
            return
        count = self._open_count() + 1
        if count > limits.max_open_orders:
            raise _reject(
                RiskLimit.MAX_OPEN_ORDERS,
                limits.max_open_orders,
                count,
                f"{what} refused: it would be working order number {count}, above "
                f"risk.max_open_orders {limits.max_open_orders}",
            )

    def _check_notional(
        self, spec: OrderSpec, resolved: ResolvedContract, what: str, quantity: float
    ) -> None:
        limits = self._limits
        limit = limits.max_order_notional
        assert limit is not None
        price = self._order_price(spec) or self.market_price(resolved.con_id)
        if price is None:
            raise _reject(
                RiskLimit.MAX_ORDER_NOTIONAL,
                limit,
                None,
                f"{what} refused: no price to value it against risk.max_order_notional (a "
                f"{spec.order_type.value} order and no market price of {resolved.display_name}); "
                "subscribe its market data or give a limit price",
            )
        fx = self._fx(resolved.currency)
        if fx is None:
            raise _reject(
                RiskLimit.MAX_ORDER_NOTIONAL,
                limit,
                None,
                f"{what} refused: no exchange rate {resolved.currency}->{limits.base_currency} "
                "to value it; set risk.fx_rates",
            )
        notional = abs(price) * quantity * resolved.multiplier * fx
        if notional > limit + _EPS:
            raise _reject(
                RiskLimit.MAX_ORDER_NOTIONAL,
                limit,
                notional,
                f"{what} refused: its value {_money(notional, limits.base_currency)} (price "
                f"{price:g} x {quantity:g} x multiplier {resolved.multiplier:g}) is above "
                f"risk.max_order_notional {_money(limit, limits.base_currency)}",
            )

    def _check_gross(
        self,
        spec: OrderSpec,
        resolved: ResolvedContract,
        what: str,
        *,
        working: list[_Working],
        account: str,
        worst: tuple[float, float, float, float],
    ) -> None:
        limits = self._limits
        limit = limits.max_gross_exposure
        assert limit is not None
        long0, short0, long1, short1 = worst
        price = self.market_price(resolved.con_id) or self._order_price(spec)
        fx = self._fx(resolved.currency)
        if price is None or fx is None:
            raise _reject(
                RiskLimit.MAX_GROSS_EXPOSURE,
                limit,
                None,
                f"{what} refused: no price or exchange rate to value it against "
                "risk.max_gross_exposure; subscribe its market data or set risk.fx_rates",
            )
        unit = abs(price) * resolved.multiplier * fx
        before = max(abs(long0), abs(short0)) * unit
        after = max(abs(long1), abs(short1)) * unit
        exposure = self._compute(working)
        others = exposure.worst_case_gross - next(
            (
                item.worst_case_exposure or 0.0
                for item in exposure.instruments
                if item.account == account and item.con_id == resolved.con_id
            ),
            0.0,
        )
        gross = others + after
        if gross > limit + _EPS and after > before + _EPS:
            raise _reject(
                RiskLimit.MAX_GROSS_EXPOSURE,
                limit,
                gross,
                f"{what} refused: the worst-case gross exposure would be "
                f"{_money(gross, limits.base_currency)}, above risk.max_gross_exposure "
                f"{_money(limit, limits.base_currency)}",
            )

    # -- what the checks read ----------------------------------------------------------

    def default_account(self) -> str:
        """The account orders go to when they name none: the setting, else the first managed."""
        if self._settings.account:
            return self._settings.account
        session = self._supervisor.session
        return session.accounts[0] if session is not None and session.accounts else ""

    def _working(self, exclude: str | None = None) -> list[_Working]:
        """This connector's working orders (in-flight ones included) as the limits count them."""
        snapshots = [s for s in self._orders.orders(working_only=True) if s.order_ref != exclude]
        refs = {s.order_ref for s in snapshots}
        default = self.default_account()
        out: list[_Working] = []
        for snap in snapshots:
            if snap.parent_ref is not None and snap.parent_ref in refs:
                continue  # a bracket exit whose entry still works
            remaining = max(0.0, snap.quantity - snap.filled)
            if remaining <= _EPS:
                continue
            group = snap.oca_group
            if group is None and snap.parent_ref is not None:
                group = f"parent:{snap.parent_ref}"  # a bracket's exits: one implicit OCA group
            con_id = snap.con_id
            if not con_id and snap.spec is not None:
                cached = self._contracts.cached(snap.spec.symbol)
                con_id = cached.con_id if cached is not None else 0
            price = snap.limit_price if snap.limit_price is not None else snap.stop_price
            out.append(
                _Working(
                    snap.order_ref,
                    snap.account or default,
                    con_id,
                    snap.action,
                    remaining,
                    group,
                    price,
                )
            )
        return out

    def _open_count(self) -> int:
        """Working orders of this connector, in-flight ones and bracket exits included."""
        return len(self._orders.orders(working_only=True))

    def holdings(self) -> list[Holding]:
        """The positions the limits see: the position service's, else ib_async's portfolio."""
        if self._positions is not None:
            pending = self._orders.unpublished_fills()
            held = self._positions()
            if pending:
                held = _with_unpublished(
                    held, pending, self.default_account(), self._contracts.by_con_id
                )
            return [h for h in held if h.quantity or h.realized_pnl]
        try:
            ib = self._supervisor.ib
        except IBConnError:
            return []
        items = {(p.account, p.contract.conId): p for p in ib.portfolio()}
        out: list[Holding] = []
        seen: set[tuple[str, int]] = set()
        for pos in ib.positions():
            key = (pos.account, pos.contract.conId)
            seen.add(key)
            item = items.get(key)
            multiplier = _finite(pos.contract.multiplier) or 1.0
            avg = _finite(pos.avgCost)
            out.append(
                _PortfolioHolding(
                    account=pos.account,
                    con_id=pos.contract.conId,
                    symbol=pos.contract.localSymbol or pos.contract.symbol,
                    quantity=float(pos.position),
                    market_price=_finite(item.marketPrice) if item is not None else None,
                    multiplier=multiplier,
                    currency=pos.contract.currency,
                    unrealized_pnl=_finite(item.unrealizedPNL) if item is not None else None,
                    realized_pnl=(_finite(item.realizedPNL) or 0.0) if item is not None else 0.0,
                    avg_price=avg / multiplier if avg is not None else None,
                )
            )
        return [h for h in out if h.quantity or h.realized_pnl]

    def position(self, account: str, con_id: int) -> float:
        """The quantity held in ``con_id`` by ``account`` (0 when none)."""
        return sum(
            h.quantity for h in self.holdings() if h.account == account and h.con_id == con_id
        )

    def _position_limit(
        self, resolved: ResolvedContract, names: set[str] | None = None
    ) -> float | None:
        per_symbol = self._limits.max_position_per_symbol
        if per_symbol:
            for name in _names(resolved) if names is None else names:
                if name in per_symbol:
                    return per_symbol[name]
        return self._limits.max_position

    def _order_price(self, spec: OrderSpec) -> float | None:
        """The price an order is valued at by itself (``None`` for market-like orders)."""
        if spec.limit_price is not None:
            return spec.limit_price
        if spec.order_type in (OrderType.STOP, OrderType.MARKET_IF_TOUCHED):
            return spec.stop_price
        if spec.order_type is OrderType.TRAILING_STOP:
            return spec.trail_stop_price
        return None

    def market_price(self, con_id: int, holdings: Iterable[Holding] | None = None) -> float | None:
        """The current price of ``con_id``: a position's mark (the position service marks
        from market data when subscribed, else TWS's portfolio), the connector's live
        market data line, or a price fetched for a check within the last minute."""
        for holding in self.holdings() if holdings is None else holdings:
            if holding.con_id == con_id and holding.market_price:
                return holding.market_price
        if con_id in self._live_lines():
            resolved = self._resolved.get(con_id) or self._contracts.by_con_id(con_id)
            if resolved is not None:
                with contextlib.suppress(Exception):
                    ticker = self._supervisor.ib.ticker(resolved.contract)
                    if ticker is not None:
                        for value in (ticker.last, ticker.midpoint()):
                            price = _finite(value)
                            if price is not None and price > 0:
                                return price
        cached = self._prices.get(con_id)
        if cached is not None:
            with contextlib.suppress(RuntimeError):
                if asyncio.get_running_loop().time() - cached[1] <= _PRICE_MAX_AGE:
                    return cached[0]
        return None

    def _live_lines(self) -> set[int]:
        """Instruments with a subscribed, fresh market data line (their tickers are current)."""
        if self._market_data is None:
            return set()
        try:
            lines = self._market_data.lines()
        except Exception:  # being closed
            return set()
        return {i.con_id for i in lines if i.kind == "mkt" and i.active and not i.stale}

    def _fx(self, currency: str) -> float | None:
        """Value of one unit of ``currency`` in the base currency."""
        base = self._limits.base_currency
        if not currency or currency.upper() == base:
            return 1.0
        with contextlib.suppress(Exception):
            for value in self._supervisor.ib.accountValues():
                if value.tag == "ExchangeRate" and value.currency == currency:
                    rate = _finite(value.value)
                    if rate is not None and rate > 0:
                        return rate
        return self._limits.fx_rates.get(currency.upper())

    # -- exposure and daily loss -------------------------------------------------------

    def exposure(self) -> Exposure:
        """The exposure of the book now (computed on the spot, no alerts)."""
        self._update_daily_pnl(datetime.now(UTC))
        return self._compute(self._working())

    def exposure_updates(self, capacity: int | None = None) -> Subscription[Exposure]:
        """A stream of :class:`Exposure` snapshots whenever a figure changes (latest wins)."""
        return self._broadcast.subscribe(capacity=capacity)

    def _compute(self, working: list[_Working]) -> Exposure:
        limits = self._limits
        now = datetime.now(UTC)
        holdings = self.holdings()
        keys: dict[tuple[str, int], str] = {}
        positions: dict[tuple[str, int], float] = {}
        meta: dict[int, tuple[float, str, float | None]] = {}
        for h in holdings:
            key = (h.account, h.con_id)
            positions[key] = positions.get(key, 0.0) + h.quantity
            keys[key] = h.symbol
            meta.setdefault(h.con_id, (h.multiplier, h.currency, h.market_price))
        by_key: dict[tuple[str, int], list[_Working]] = {}
        for order in working:
            key = (order.account, order.con_id)
            by_key.setdefault(key, []).append(order)
            if key not in keys:
                resolved = self._resolved.get(order.con_id) or self._contracts.by_con_id(
                    order.con_id
                )
                keys[key] = resolved.display_name if resolved is not None else str(order.con_id)
        items: list[InstrumentExposure] = []
        unpriced: list[str] = []
        utilization: dict[str, float] = {}
        for key, symbol in sorted(keys.items(), key=lambda kv: (kv[0][0], kv[1])):
            account, con_id = key
            position = positions.get(key, 0.0)
            orders = by_key.get(key, [])
            buys, sells = _side_totals(orders)
            resolved = self._resolved.get(con_id) or self._contracts.by_con_id(con_id)
            multiplier, currency, held_price = meta.get(
                con_id,
                (
                    resolved.multiplier if resolved is not None else 1.0,
                    resolved.currency if resolved is not None else limits.base_currency,
                    None,
                ),
            )
            price = self.market_price(con_id, holdings) or held_price
            if price is None:
                price = next((o.price for o in orders if o.price is not None), None)
            fx = self._fx(currency)
            worst_long, worst_short = position + buys, position - sells
            value = worst = None
            if price is not None and fx is not None:
                unit = abs(price) * multiplier * fx
                value = position * unit * (1 if price >= 0 else -1)
                worst = max(abs(worst_long), abs(worst_short)) * unit
            elif position or buys or sells:
                unpriced.append(symbol)
            limit = self._position_limit(resolved) if resolved is not None else limits.max_position
            item = InstrumentExposure(
                account=account,
                con_id=con_id,
                symbol=symbol,
                position=position,
                working_buy=buys,
                working_sell=sells,
                worst_long=worst_long,
                worst_short=worst_short,
                price=price,
                multiplier=multiplier,
                currency=currency,
                fx_rate=fx,
                market_value=value,
                worst_case_exposure=worst,
                position_limit=limit,
            )
            items.append(item)
            if limit is not None:
                utilization[f"max_position:{account}:{symbol}"] = _ratio(item.worst_abs, limit)
        gross = sum(abs(i.market_value) for i in items if i.market_value is not None)
        net = sum(i.market_value for i in items if i.market_value is not None)
        worst_gross = sum(i.worst_case_exposure or 0.0 for i in items)
        if limits.max_gross_exposure is not None:
            utilization["max_gross_exposure"] = _ratio(worst_gross, limits.max_gross_exposure)
        if limits.max_open_orders is not None:
            utilization["max_open_orders"] = _ratio(self._open_count(), limits.max_open_orders)
        daily = self._daily_pnl
        if limits.max_daily_loss is not None and daily is not None:
            utilization["max_daily_loss"] = _ratio(max(0.0, -daily), limits.max_daily_loss)
        return Exposure(
            time=now,
            base_currency=limits.base_currency,
            instruments=tuple(items),
            gross_exposure=gross,
            net_exposure=net,
            worst_case_gross=worst_gross,
            open_orders=self._open_count(),
            daily_pnl=daily,
            trading_day=self._day.day or trading_day(now, limits),
            kill_switch=self._kill.engaged,
            utilization=MappingProxyType(utilization),
            unpriced=tuple(unpriced),
        )

    def _update_daily_pnl(self, now: datetime) -> float | None:
        """Realized plus unrealized since the start of the trading day (base currency)."""
        day_state = self._day
        today = trading_day(now, self._limits)
        holdings = self.holdings()
        if day_state.day != today:
            first = day_state.day is None
            day_state.day = today
            day_state.baselines.clear()
            day_state.tripped = False
            day_state.at_start = {(h.account, h.con_id) for h in holdings}
            if not first:
                _log.info("risk: new trading day {}; daily P&L starts at 0", today)
        totals: dict[tuple[str, int], float] = {}
        for h in holdings:
            fx = self._fx(h.currency)
            if fx is None:
                continue
            key = (h.account, h.con_id)
            unrealized = h.unrealized_pnl
            if unrealized is None and h.quantity:
                continue  # not marked yet: its P&L is unknown
            totals[key] = totals.get(key, 0.0) + ((unrealized or 0.0) + h.realized_pnl) * fx
        pnl = 0.0
        known = False
        for key, total in totals.items():
            if key not in day_state.baselines:
                # There at the day's start: from now on. Opened during the day: all of it.
                day_state.baselines[key] = total if key in day_state.at_start else 0.0
            pnl += total - day_state.baselines[key]
            known = True
        self._daily_pnl = pnl if known or not holdings else None
        return self._daily_pnl

    def _daily_loss(self) -> float:
        pnl = self._daily_pnl
        return -pnl if pnl is not None and pnl < 0 else 0.0

    def evaluate(self) -> Exposure:
        """Recompute exposure and daily P&L now, alert on thresholds, trip on the daily loss.

        The monitor calls this every ``risk.exposure_interval`` seconds and
        after order and position changes; call it to force an update.
        """
        now = datetime.now(UTC)
        self._update_daily_pnl(now)
        exposure = self._compute(self._working())
        self._exposure = exposure
        key = (
            exposure.instruments,
            exposure.gross_exposure,
            exposure.worst_case_gross,
            exposure.open_orders,
            exposure.daily_pnl,
            exposure.kill_switch,
        )
        if key != self._exposure_key:
            self._exposure_key = key
            self._broadcast.publish(exposure)
        self._threshold_alerts(exposure)
        self._daily_loss_trip(exposure)
        return exposure

    def _threshold_alerts(self, exposure: Exposure) -> None:
        warn = self._limits.warning_threshold
        for name, used in exposure.utilization.items():
            level = 2 if used > 1 + 1e-9 else 1 if used >= warn - 1e-12 else 0
            before = self._levels.get(name, 0)
            self._levels[name] = level
            if level == before:
                continue
            limit = name.split(":", 1)[0]
            if level > before:
                severity = Severity.ERROR if level == 2 else Severity.WARNING
                state = (
                    "beyond the limit" if level == 2 else f"{warn:.0%} warning threshold reached"
                )
                self._alerts.publish(
                    severity,
                    "risk",
                    f"{name}: {state} ({used:.0%} of the limit used)",
                    coalesce_key=("risk_level", name, level),
                    limit=limit,
                    utilization=used,
                )
            elif level == 0:
                self._alerts.publish(
                    Severity.INFO,
                    "risk",
                    f"{name}: back below {warn:.0%} of the limit ({used:.0%} used)",
                    coalesce_key=("risk_level", name, 0),
                    limit=limit,
                    utilization=used,
                )

    def _daily_loss_trip(self, exposure: Exposure) -> None:
        limit = self._limits.max_daily_loss
        pnl = exposure.daily_pnl
        if limit is None or pnl is None or self._day.tripped or -pnl <= limit:
            return
        self._day.tripped = True
        currency = self._limits.base_currency
        reason = (
            f"daily loss {_money(-pnl, currency)} beyond max_daily_loss {_money(limit, currency)}"
        )
        self._spawn(self._trip(reason), "ibconn-risk-daily-loss")

    async def _trip(self, reason: str) -> None:
        await self.kill_switch(reason)

    # -- the kill switch ---------------------------------------------------------------

    @property
    def kill_switch_state(self) -> KillSwitchState:
        """Where the kill switch stands."""
        return self._kill

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
        use_global = (
            self._limits.kill_switch_global_cancel if global_cancel is None else global_cancel
        )
        was_engaged = self._kill.engaged
        if not was_engaged:
            self._kill = KillSwitchState(
                engaged=True, reason=reason, since=datetime.now(UTC), global_cancel=use_global
            )
        else:
            self._kill = replace(self._kill, global_cancel=self._kill.global_cancel or use_global)
        working = self._orders.orders(working_only=True)
        _log.warning("risk: kill switch {}: {}", "engaged" if not was_engaged else "again", reason)
        self._alerts.publish(
            Severity.CRITICAL,
            "risk",
            f"kill switch engaged: {reason}; cancelling {len(working)} working order(s)"
            + (" and sending TWS's global cancel" if use_global else ""),
            coalesce_key=("kill_switch", reason),
            reason=reason,
            orders=len(working),
        )
        if not was_engaged:
            self._notify_kill()
        self._send_cancels(use_global)
        self._wake.set()
        state = self._supervisor.state
        if state not in (ConnectionState.CONNECTED, ConnectionState.DEGRADED) or not working:
            return self._kill
        limit = timeout if timeout is not None else self._settings.order_ack_timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                for snap in working:
                    if not self._is_done(snap.order_ref):
                        with contextlib.suppress(IBConnError):
                            await self._orders.wait_for_order(snap.order_ref)
        still = tuple(s.order_ref for s in working if not self._is_done(s.order_ref))
        self._kill = replace(self._kill, still_working=still)
        return self._kill

    def _is_done(self, order_ref: str) -> bool:
        try:
            return self._orders.get_order_status(order_ref).is_done
        except IBConnError:  # forgotten: it was never sent
            return True

    def reset_kill_switch(self) -> KillSwitchState:
        """Turn the kill switch off: orders that open positions pass again (limits permitting)."""
        previous = self._kill
        if not previous.engaged:
            return previous
        self._kill = KillSwitchState(engaged=False)
        _log.warning("risk: kill switch reset (was: {})", previous.reason)
        self._alerts.publish(
            Severity.INFO,
            "risk",
            f"kill switch reset (engaged since {previous.since:%H:%M:%S} UTC for: "
            f"{previous.reason})"
            if previous.since is not None
            else "kill switch reset",
            coalesce_key=("kill_switch_reset",),
        )
        self._notify_kill()
        self._wake.set()
        return self._kill

    def _notify_kill(self) -> None:
        for callback in list(self._kill_listeners):
            try:
                callback(self._kill)
            except Exception as exc:
                _log.opt(exception=exc).error("kill switch listener raised {!r}", exc)

    def _send_cancels(self, use_global: bool) -> int:
        """Send a cancel for every working order (and the global cancel) ahead of the queue.

        Returns how many messages were handed to the pacer; marks the state
        ``deferred`` when the link is down (they are sent again when it is back).
        """
        try:
            ib = self._supervisor.ib
        except IBConnError:
            self._kill = replace(self._kill, deferred=True)
            return 0
        working = [s for s in self._orders.orders(working_only=True) if s.order_id]
        trades = {
            (t.order.clientId, t.order.orderId): t.order for t in ib.openTrades() if t.order.orderId
        }
        session = self._supervisor.session
        client_id = session.client_id if session is not None else self._settings.client_id
        connected = ib.isConnected() and self._supervisor.pacer.installed
        sent = 0
        deferred = not connected
        if connected:
            # The global cancel first (the pacer's URGENT lane: ahead of every queued
            # cancel too), then the per-order cancels (CRITICAL: ahead of every queued
            # order and data request).
            with self._supervisor.pacer.critical():
                if use_global:
                    try:
                        ib.reqGlobalCancel()
                        sent += 1
                    except ConnectionError:
                        deferred = True
                for snap in working:
                    if deferred:
                        break
                    order_id = snap.order_id or 0
                    target = trades.get((client_id, order_id)) or Order(
                        orderId=order_id, clientId=client_id, permId=snap.perm_id or 0
                    )
                    try:
                        ib.cancelOrder(target)
                        sent += 1
                    except ConnectionError:
                        deferred = True
                        break
        self._kill = replace(
            self._kill, cancels_sent=self._kill.cancels_sent + sent, deferred=deferred
        )
        if sent:
            _log.warning("risk: kill switch sent {} cancel message(s)", sent)
        return sent

    # -- Service hooks -----------------------------------------------------------------

    async def on_session_ready(self, ib: IB, session: Session) -> None:
        """Re-send the kill switch's cancels (the orders are resynced by now); start the monitor."""
        if self._installed is not ib:
            self._install(ib)
        if self._kill.engaged:
            self._send_cancels(self._kill.global_cancel)
        self._start_tasks()
        self._wake.set()

    async def on_session_lost(self, reason: str) -> None:
        """Nothing is lost: the state is ibconn's own; the cancels wait for the next session."""
        if self._kill.engaged:
            self._kill = replace(self._kill, deferred=True)

    def _install(self, ib: IB) -> None:
        move_handlers(
            self._installed,
            ib,
            [
                ("positionEvent", self._on_book_event),
                ("updatePortfolioEvent", self._on_book_event),
            ],
        )
        self._installed = ib

    def _on_book_event(self, *_: object) -> None:
        self._wake.set()

    def wake(self) -> None:
        """Ask the monitor to re-evaluate soon (position and price changes call this)."""
        self._wake.set()

    def _start_tasks(self) -> None:
        if self._started or self._closed:
            return
        self._started = True
        self._spawn(self._monitor(), "ibconn-risk-monitor")
        self._spawn(self._follow(self._orders.order_updates), "ibconn-risk-orders")
        if self._position_updates is not None:
            self._spawn(self._follow(self._position_updates), "ibconn-risk-positions")
        self._spawn(self._follow_connection(self._supervisor.events()), "ibconn-risk-connection")

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            _log.opt(exception=exc).error("risk task {} failed: {!r}", task.get_name(), exc)

    async def _monitor(self) -> None:
        interval = self._limits.exposure_interval
        loop = asyncio.get_running_loop()
        last = -math.inf
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            spacing = interval / 10 - (loop.time() - last)
            if spacing > 0:  # a burst of events is evaluated once
                await asyncio.sleep(spacing)
                self._wake.clear()
            last = loop.time()
            try:
                self.evaluate()
            except Exception as exc:  # the monitor must survive a bad figure
                _log.opt(exception=exc).error("risk evaluation raised {!r}", exc)

    async def _follow(self, open_stream: Callable[[], Subscription[Any]]) -> None:
        """Wake the monitor on every item of a stream (order updates, position changes)."""
        while not self._closed:
            try:
                async with open_stream() as stream:
                    async for _ in stream:
                        self._wake.set()
                return
            except StreamOverflowError:  # fell behind a burst: a fresh reader will do
                self._wake.set()

    async def _follow_connection(self, events: Subscription[ConnectionEvent]) -> None:
        while not self._closed:
            try:
                async with events:
                    async for event in events:
                        back = (
                            event.state is ConnectionState.CONNECTED
                            and event.previous is ConnectionState.DEGRADED
                        )
                        if back and self._kill.engaged:
                            # 1102: the link is back without a new session: cancel again.
                            self._send_cancels(self._kill.global_cancel)
                return
            except StreamOverflowError:  # cannot happen at human rates; read on regardless
                events = self._supervisor.events()

    def close(self) -> None:
        """Stop the monitor and end the exposure streams (the connector is closed)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        self._broadcast.close()

    def __repr__(self) -> str:
        return (
            f"<RiskService kill_switch={'on' if self._kill.engaged else 'off'} "
            f"rejections={self._rejections}>"
        )


def _reject(limit: RiskLimit, limit_value: object, order_value: object, message: str) -> Exception:
    return RiskRejectedError(
        message, limit=limit.value, limit_value=limit_value, order_value=order_value
    )


def _ratio(value: float, limit: float) -> float:
    if limit <= 0:
        return 0.0 if value <= _EPS else math.inf
    return value / limit
