"""The broker inside the simulated gateway: routing, subscriptions, periodic pushes.

:class:`GatewayBroker` is the :class:`~ibconn.sim.broker.broker.Broker` a
:class:`~ibconn.sim.server.gateway.SimulatedGateway` owns (``gw.broker``). On top of
the pure engine it

* listens to the gateway's market and feeds every quote to the matching engine;
* turns broker events into wire messages for the right clients: order
  updates, executions and commission reports to the client that placed the
  order and to client 0 when it asked for auto-binding (reqAutoOpenOrders);
  position changes to reqPositions subscribers and, as updatePortfolio, to
  reqAccountUpdates subscribers of the account; errors to the submitting client;
* keeps the per-connection subscriptions (positions, account updates,
  account updates multi, account summary, PnL, PnL single) and refreshes them
  with price moves every ``account_update_interval`` / ``pnl_interval``
  seconds (only changed values are re-sent);
* implements the ``drop_after_next`` and ``drop_after_reply`` faults (through the
  gateway's received hooks).

Orders, executions and positions live in the broker, not in connections:
a client that reconnects with the same client id finds its orders again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ibconn.core.logs import get_logger
from ibconn.core.tasks import cancel_all
from ibconn.sim.broker import account_wire as aw
from ibconn.sim.broker import order_wire as om
from ibconn.sim.broker.accounts import DEFAULT_COMMISSIONS, AccountValue, CommissionRate
from ibconn.sim.broker.broker import Broker
from ibconn.sim.broker.matching import BookQuote
from ibconn.sim.broker.ports import BrokerHost
from ibconn.sim.broker.records import (
    AccountEvent,
    BrokerConfig,
    BrokerEvent,
    CommissionEvent,
    ExecutionEvent,
    OpenOrderEvent,
    OrderErrorEvent,
    OrderStatusEvent,
    PositionEvent,
)
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.protocol.ports import ClientLink

if TYPE_CHECKING:
    from ibconn.sim.market.quotes import MarketQuote

__all__ = ["GatewayBroker", "broker_config_from"]

_log = get_logger("sim")


@dataclass(slots=True)
class _ValueSub:
    """A subscription to account values (updates, multi or summary)."""

    kind: str  # "updates", "multi", "summary"
    session: ClientLink
    req_id: int
    accounts: tuple[str, ...]
    tags: tuple[str, ...] = ()
    model_code: str = ""
    ledger_and_nlv: bool = False
    last: dict[tuple[str, str, str], str] = field(default_factory=dict)
    portfolio: dict[tuple[str, int], tuple[float, float, float, float]] = field(
        default_factory=dict
    )


@dataclass(slots=True)
class _PnLSub:
    session: ClientLink
    req_id: int
    account: str
    con_id: int | None = None


_LEDGER_AND_NLV_KEYS = frozenset(
    {
        "CashBalance",
        "TotalCashBalance",
        "NetLiquidationByCurrency",
        "NetLiquidation",
        "RealizedPnL",
        "UnrealizedPnL",
        "StockMarketValue",
        "FuturesPNL",
        "ExchangeRate",
        "Currency",
    }
)


def broker_config_from(gateway: BrokerHost) -> BrokerConfig:
    """The broker settings a gateway's :class:`~ibconn.sim.config.SimConfig` implies."""
    cfg = gateway.config
    commissions = dict(DEFAULT_COMMISSIONS)
    commissions["STK"] = CommissionRate(
        per_unit=cfg.commission_per_share, minimum=cfg.min_commission, maximum_pct=0.01
    )
    return BrokerConfig(
        accounts=tuple(cfg.accounts),
        initial_cash=cfg.initial_cash,
        currency=cfg.base_currency,
        commissions=commissions,
        max_fill_size=cfg.max_fill_size,
        max_order_size=cfg.max_order_size,
        read_only=cfg.read_only,
    )


class GatewayBroker(Broker):
    """The broker of a :class:`~ibconn.sim.server.gateway.SimulatedGateway` (see the module doc)."""

    def __init__(self, gateway: BrokerHost) -> None:
        super().__init__(
            list(gateway.book),
            broker_config_from(gateway),
            clock=lambda: datetime.fromtimestamp(gateway.clock.time(), UTC),
            quote_provider=self._market_quote,
        )
        self.gateway = gateway
        cfg = gateway.config
        self.fill_delay: float = cfg.fill_delay
        """Real seconds between an order's arrival and its first look at the market."""
        self.pnl_interval: float = getattr(cfg, "pnl_interval", 1.0)
        self.account_update_interval: float = getattr(cfg, "account_update_interval", 1.0)
        self.defer = self._defer
        self._auto_bind: set[ClientLink] = set()
        self._position_subs: set[ClientLink] = set()
        self._value_subs: list[_ValueSub] = []
        self._pnl_subs: list[_PnLSub] = []
        self._drop_next: list[tuple[int, int | None, bool]] = []
        self._tasks: list[asyncio.Task[None]] = []
        gateway.market.add_listener(self._on_market)
        gateway.add_received_hook(self._on_received)
        self.add_listener(self._deliver)
        self.route_filter: Callable[[BrokerEvent], None] | None = None
        """When set (by a fault control), receives every event instead of :meth:`route`
        and decides when, how often and whether to route it."""

    # ------------------------------------------------------------------ gateway hooks

    def start(self) -> None:
        """Start the periodic PnL and account refreshes (the gateway calls this)."""
        if self._tasks:
            return
        self._tasks = [
            self.gateway.spawn(self._every(self.pnl_interval, self.push_pnl), "sim-pnl"),
            self.gateway.spawn(
                self._every(self.account_update_interval, self.push_account_values),
                "sim-account-updates",
            ),
        ]

    async def stop(self) -> None:
        """Stop the periodic refreshes (state stays)."""
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)

    def on_session_started(self, session: ClientLink) -> None:
        """A client finished startApi (nothing to do: its orders wait in the broker)."""

    def on_session_closed(self, session: ClientLink) -> None:
        """Forget the subscriptions of a closed connection."""
        self._auto_bind.discard(session)
        self._position_subs.discard(session)
        self._value_subs = [s for s in self._value_subs if s.session is not session]
        self._pnl_subs = [s for s in self._pnl_subs if s.session is not session]

    async def _every(self, interval: float, push: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(max(0.001, interval))
            try:
                push()
            except Exception:
                _log.exception("periodic broker push failed")

    # ------------------------------------------------------------------ market

    def _market_quote(self, inst: Instrument) -> BookQuote | None:
        try:
            q = self.gateway.market.quote(inst.con_id)
        except KeyError:
            return None
        return BookQuote.of(q.bid, q.ask, q.last)

    def quote(self, instrument: Instrument) -> BookQuote:
        """The market's live quote of ``instrument`` (the gateway's prices are the truth)."""
        return self._market_quote(instrument) or super().quote(instrument)

    def _on_market(self, inst: Instrument, quote: MarketQuote) -> None:
        # Hot path (every price update): only instruments with working orders matter.
        if self._live.get(inst.con_id):
            self.on_quote(inst, quote.bid, quote.ask, quote.last)

    def _defer(self, callback: Callable[[], None]) -> None:
        if self.fill_delay <= 0:
            callback()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            callback()
            return
        loop.call_later(self.fill_delay, callback)

    # ------------------------------------------------------------------ drop fault

    def _on_received(self, session: ClientLink, fields: list[str]) -> None:
        if not self._drop_next:
            return
        try:
            msg_id: int | None = int(fields[0])
        except (ValueError, IndexError):
            msg_id = None
        for i, (wanted, client_id, after_reply) in enumerate(self._drop_next):
            if wanted == msg_id and (client_id is None or client_id == session.client_id):
                del self._drop_next[i]
                _log.info(
                    "dropping client {} after {} {} (fault control)",
                    session.client_id,
                    "the replies to its message" if after_reply else "its message",
                    msg_id,
                )
                if after_reply:
                    # The handler runs (and writes its replies) right after this hook, in
                    # the same callback: close once it did, the replies before the FIN.
                    asyncio.get_running_loop().call_soon(session.close)
                else:
                    # Abort now: the handler still runs, but nothing it sends is written.
                    session.abort()
                break

    def drop_after_next(self, msg_id: int, client_id: int | None = None) -> None:
        """Process the next message ``msg_id`` (of ``client_id``, or any client), then
        drop that connection before any reply is written."""
        self._drop_next.append((int(msg_id), client_id, False))

    def drop_after_reply(self, msg_id: int, client_id: int | None = None) -> None:
        """Process the next message ``msg_id`` (of ``client_id``, or any client), write its
        replies (an acknowledgement, fills), then close that connection."""
        self._drop_next.append((int(msg_id), client_id, True))

    # ------------------------------------------------------------------ routing

    def set_auto_bind(self, session: ClientLink, enabled: bool) -> None:
        """Client 0's reqAutoOpenOrders: receive every client's order updates."""
        if enabled:
            self._auto_bind.add(session)
        else:
            self._auto_bind.discard(session)

    def _order_targets(self, client_id: int) -> list[ClientLink]:
        targets: list[ClientLink] = []
        own = self.gateway.session(client_id)
        if own is not None:
            targets.append(own)
        for session in self._auto_bind:
            if session is not own and session.connected:
                targets.append(session)
        return targets

    def _deliver(self, event: BrokerEvent) -> None:
        if self.route_filter is not None:
            self.route_filter(event)
        else:
            self.route(event)

    def route(self, event: BrokerEvent) -> None:
        """Encode ``event`` and send it to the clients it concerns."""
        if isinstance(event, OpenOrderEvent):
            order = event.order
            self._send_order(
                order.client_id, lambda version: om.open_order_fields(order, version=version)
            )
        elif isinstance(event, OrderStatusEvent):
            status = om.order_status_fields(event.order)
            self._send_order(event.order.client_id, lambda _version: status)
        elif isinstance(event, ExecutionEvent):
            ex = event.execution
            self._send_order(
                ex.client_id, lambda version: om.exec_details_fields(ex, -1, version=version)
            )
        elif isinstance(event, CommissionEvent):
            report = om.commission_report_fields(event.execution)
            self._send_order(event.execution.client_id, lambda _version: report)
        elif isinstance(event, PositionEvent):
            pos = event.position
            fields = aw.position_fields(pos)
            for session in list(self._position_subs):
                session.send(*fields)
            for sub in self._value_subs:
                if sub.kind == "updates" and pos.account in sub.accounts:
                    self._send_portfolio(sub, force=True)
        elif isinstance(event, AccountEvent):
            for sub in self._value_subs:
                if event.account in sub.accounts:
                    self._flush_values(sub)
        elif isinstance(event, OrderErrorEvent):
            target = self.gateway.session(event.client_id)
            if target is not None:
                target.send_error(event.order_id, event.code, event.message, event.advanced)

    def _send_order(self, client_id: int, encode: Callable[[int], list[str]]) -> None:
        """Send ``encode(version)`` to the order's client(s), each in its negotiated layout."""
        by_version: dict[int, list[str]] = {}
        for session in self._order_targets(client_id):
            version = session.server_version
            fields = by_version.get(version)
            if fields is None:
                fields = by_version[version] = encode(version)
            session.send(*fields)

    # ------------------------------------------------------------------ positions

    def subscribe_positions(self, session: ClientLink) -> None:
        """reqPositions: every position (closed ones today too), positionEnd, then pushes."""
        self._position_subs.add(session)
        for pos in self.positions(include_closed=True):
            session.send(*aw.position_fields(pos))
        session.send(*aw.position_end_fields())

    def unsubscribe_positions(self, session: ClientLink) -> None:
        """cancelPositions."""
        self._position_subs.discard(session)

    # ------------------------------------------------------------------ account values

    def _values_for(self, sub: _ValueSub) -> list[AccountValue]:
        out: list[AccountValue] = []
        for account in sub.accounts:
            if sub.kind == "summary":
                out += self.account_summary(account, sub.tags)
            else:
                values = self.account_values(account)
                if sub.ledger_and_nlv:
                    values = [v for v in values if v.key in _LEDGER_AND_NLV_KEYS]
                out += values
        return out

    def _send_value(self, sub: _ValueSub, value: AccountValue) -> None:
        if sub.kind == "updates":
            sub.session.send(*aw.account_value_fields(value))
        elif sub.kind == "multi":
            sub.session.send(*aw.account_update_multi_fields(sub.req_id, value, sub.model_code))
        else:
            sub.session.send(*aw.account_summary_fields(sub.req_id, value))

    def _flush_values(self, sub: _ValueSub) -> int:
        sent = 0
        for value in self._values_for(sub):
            key = (value.account, value.key, value.currency)
            if sub.last.get(key) != value.value:
                sub.last[key] = value.value
                self._send_value(sub, value)
                sent += 1
        if sent and sub.kind == "updates":
            now = datetime.fromtimestamp(self.gateway.clock.time(), self.gateway.timezone)
            sub.session.send(*aw.account_time_fields(now))
        return sent

    def _send_portfolio(self, sub: _ValueSub, *, force: bool = False) -> None:
        for account in sub.accounts:
            for pos in self.positions(account, include_closed=True):
                key = (account, pos.con_id)
                state = (pos.quantity, pos.market_price, pos.avg_cost, pos.realized_pnl)
                previous = sub.portfolio.get(key)
                if previous == state:
                    continue
                if previous is None and pos.quantity == 0 and not force:
                    continue
                sub.portfolio[key] = state
                sub.session.send(*aw.portfolio_fields(pos))

    def subscribe_account_updates(self, session: ClientLink, account: str) -> None:
        """reqAccountUpdates(True): values, portfolio, time, accountDownloadEnd, then pushes."""
        account = account or self.default_account
        self.unsubscribe_account_updates(session)
        sub = _ValueSub("updates", session, 0, (account,))
        self._value_subs.append(sub)
        for value in self._values_for(sub):
            sub.last[(value.account, value.key, value.currency)] = value.value
            self._send_value(sub, value)
        self._send_portfolio(sub)
        now = datetime.fromtimestamp(self.gateway.clock.time(), self.gateway.timezone)
        session.send(*aw.account_time_fields(now))
        session.send(*aw.account_download_end_fields(account))

    def unsubscribe_account_updates(self, session: ClientLink) -> None:
        """reqAccountUpdates(False)."""
        self._value_subs = [
            s for s in self._value_subs if not (s.session is session and s.kind == "updates")
        ]

    def subscribe_account_multi(
        self,
        session: ClientLink,
        req_id: int,
        account: str,
        model_code: str,
        ledger_and_nlv: bool,
    ) -> None:
        """reqAccountUpdatesMulti: values (73) then accountUpdateMultiEnd, then pushes."""
        accounts = self._accounts_named(account)
        sub = _ValueSub(
            "multi", session, req_id, accounts, model_code=model_code,
            ledger_and_nlv=ledger_and_nlv,
        )  # fmt: skip
        self._value_subs.append(sub)
        self._flush_values(sub)
        session.send(*aw.account_update_multi_end_fields(req_id))

    def subscribe_account_summary(
        self, session: ClientLink, req_id: int, group: str, tags: list[str]
    ) -> None:
        """reqAccountSummary: values (63) of every account, accountSummaryEnd, then pushes."""
        sub = _ValueSub("summary", session, req_id, self.accounts, tags=tuple(tags))
        self._value_subs.append(sub)
        self._flush_values(sub)
        session.send(*aw.account_summary_end_fields(req_id))

    def cancel_value_sub(self, session: ClientLink, kind: str, req_id: int) -> None:
        """cancelAccountUpdatesMulti / cancelAccountSummary."""
        self._value_subs = [
            s
            for s in self._value_subs
            if not (s.session is session and s.kind == kind and s.req_id == req_id)
        ]

    def _accounts_named(self, account: str) -> tuple[str, ...]:
        if not account or account.upper() == "ALL":
            return self.accounts
        return (account,)

    def push_account_values(self) -> None:
        """Re-send what changed (values and portfolio) to every account subscriber."""
        for sub in list(self._value_subs):
            if not sub.session.connected:
                continue
            self._flush_values(sub)
            if sub.kind == "updates":
                self._send_portfolio(sub)

    # ------------------------------------------------------------------ PnL

    def subscribe_pnl(
        self, session: ClientLink, req_id: int, account: str, con_id: int | None = None
    ) -> None:
        """reqPnL / reqPnLSingle: one answer now, then one every ``pnl_interval``."""
        sub = _PnLSub(session, req_id, account or self.default_account, con_id)
        self._pnl_subs.append(sub)
        self._send_pnl(sub)

    def cancel_pnl(self, session: ClientLink, req_id: int) -> None:
        """cancelPnL / cancelPnLSingle."""
        self._pnl_subs = [
            s for s in self._pnl_subs if not (s.session is session and s.req_id == req_id)
        ]

    def _send_pnl(self, sub: _PnLSub) -> None:
        if sub.con_id is None:
            sub.session.send(*aw.pnl_fields(sub.req_id, self.pnl(sub.account)))
        else:
            pos = self.position(sub.account, sub.con_id)
            sub.session.send(*aw.pnl_single_fields(sub.req_id, pos))

    def push_pnl(self) -> None:
        """Send every PnL / PnL single subscriber its current figures."""
        for sub in list(self._pnl_subs):
            if sub.session.connected:
                self._send_pnl(sub)

    def __repr__(self) -> str:
        return (
            f"<GatewayBroker orders={len(self._orders)} open={len(self.open_orders())} "
            f"executions={len(self._executions)} accounts={','.join(self.accounts)}>"
        )
