"""One seeded chaos run: a trading workload and a fault schedule, then the invariants.

``await run_seed(seed)`` starts a :class:`~ibconn.sim.SimulatedGateway` and an
:class:`~ibconn.IBConnector` with small intervals, plays a plan drawn from
``random.Random(seed)`` (orders, modifications, cancels, price moves, fills made at
the gateway, faults), settles, and checks the connector against the gateway's ground
truth. The plan is drawn before anything runs, so the seed alone reproduces it; the
choices a step makes at run time (which working order to modify) come from the
step's own seed, also drawn from the seed. ``SeedResult.report()`` prints the
schedule and every violated invariant.

The workload only uses the connector's public API. The gateway's fault controls are
documented in ``docs/simulator.md``; what each fault models in TWS and the invariants
are in ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ibconn import IBConnector
from ibconn.connection.session import ConnectionState
from ibconn.errors import IBConnError, OrderRejectedError
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.orders.models import (
    Fill,
    OrderSnapshot,
    OrderStatus,
    OrderUpdate,
    UpdateKind,
    exec_prefix,
)
from ibconn.positions.models import Position
from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.broker.order_parsing import parse_place_order
from ibconn.sim.protocol.ids import In

CLIENT_ID = 1
SYMBOLS = ("AAPL", "MSFT")
START_PRICES = {"AAPL": 190.0, "MSFT": 400.0}
TICK = 0.01

# Faults by kind (docs/reliability.md says what each models in TWS).
FAULTS = (
    "drop",
    "restart",
    "restart_rolled_back_ids",
    "half_open_stall",
    "lost_1100_1101",
    "lost_1100_1102",
    "lost_1100_never_restored",
    "farm_2103_2104",
    "port_reset_1300",
    "competing_session_10197",
    "trades_while_cut_off",
    "in_flight_place",
    "in_flight_modify",
    "in_flight_cancel",
    "drop_during_resync",
    "slow_start_up_sync",
    "start_up_sync_timeout",
    "connector_restart",
    # drawn from a second stream (draw_plan): the seeds keep the plans they had before
    "requests_frozen_while_streaming",
    "drop_after_ack",
)
LATER_FAULTS = ("requests_frozen_while_streaming", "drop_after_ack")
FIRST_FAULTS = tuple(f for f in FAULTS if f not in LATER_FAULTS)
"""Kinds added after the first long runs: a seed's plan draws them from a stream of its
own, so that the plan of every older seed (the regression seeds') stays what it was, but
for a fault step that this stream turns into one of these (about 2 of 20)."""
ACTIONS = (
    "marketable_limit",
    "resting_limit",
    "market",
    "stop",
    "bracket",
    "modify",
    "cancel",
    "cancel_all",
    "move_price",
    "gateway_fill",
    "correction",
)
ACTION_WEIGHTS = (4, 5, 2, 2, 2, 4, 3, 1, 6, 3, 1)


def connector_settings(port: int) -> dict[str, Any]:
    """Connector settings with intervals small enough for a run of a few seconds."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "client_id": CLIENT_ID,
        "reconnect_attempts": 0,
        "reconnect_interval": 0.01,
        "reconnect_max_interval": 0.05,
        "connection_timeout": 1.5,
        "market_data_timeout": 2,
        "heartbeat_interval": 0.15,
        "heartbeat_timeout": 0.4,
        "heartbeat_flood_timeout": 0.8,
        "resync_timeout": 3,
        "degraded_timeout": 0.4,
        "order_ack_timeout": 2,
        "market_data_type": "REALTIME",
    }


def gateway_config(seed: int) -> SimConfig:
    """Prices move only when the plan says so; new orders look at the market at once."""
    return SimConfig(tick_rate=0, fill_delay=0.0, seed=seed, account_update_interval=0.5)


@dataclass(frozen=True)
class Step:
    """One step of a plan: one to three operations run concurrently."""

    index: int
    ops: tuple[str, ...]
    seed: int

    def __str__(self) -> str:
        return f"#{self.index} {' + '.join(self.ops)}"


@dataclass(frozen=True)
class Plan:
    """Everything a seed does, drawn before the run."""

    seed: int
    steps: tuple[Step, ...]

    @property
    def faults(self) -> Counter[str]:
        return Counter(op for step in self.steps for op in step.ops if op in FAULTS)

    def schedule(self) -> str:
        return "\n".join(f"  {step}" for step in self.steps)


def draw_plan(
    seed: int, *, faults: tuple[str, ...] = FAULTS, steps: int | None = None, max_faults: int = 3
) -> Plan:
    """The plan of ``seed``: about 14 steps, 1-``max_faults`` of them with a fault."""
    rng = random.Random(seed)
    later_rng = random.Random(seed ^ 0x1A7E_FA17)
    first = tuple(f for f in faults if f not in LATER_FAULTS)
    later = tuple(f for f in faults if f in LATER_FAULTS)
    count = steps if steps is not None else rng.randint(10, 16)
    fault_steps = set(rng.sample(range(2, count), k=min(count - 2, rng.randint(1, max_faults))))
    out: list[Step] = []
    for i in range(count):
        width = rng.choice((1, 1, 1, 2, 2, 3))
        ops = rng.choices(ACTIONS, weights=ACTION_WEIGHTS, k=width)
        if i in fault_steps and faults:
            kind = rng.choice(first or later)  # drawn before the slot, as it always was
            slot = rng.randrange(width)
            if first and later and later_rng.random() < len(later) / len(faults):
                kind = later_rng.choice(later)
            ops[slot] = kind
            if "connector_restart" in ops:  # a program restart: nothing else runs meanwhile
                ops = ["connector_restart"]
        if i < 2:  # start with a position and something resting
            ops = ["marketable_limit" if i == 0 else "resting_limit"]
        out.append(Step(i, tuple(ops), rng.randrange(2**32)))
    return Plan(seed, tuple(out))


@dataclass
class SeedResult:
    """The outcome of one seed."""

    seed: int
    plan: Plan
    violations: list[str]
    outcomes: Counter[str]
    elapsed: float
    recoveries: int

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        lines = [
            f"seed {self.seed}: {'ok' if self.ok else 'FAILED'} in {self.elapsed:.1f} s, "
            f"{self.recoveries} recoveries",
            "schedule:",
            self.plan.schedule(),
        ]
        if self.violations:
            lines.append("violated:")
            lines.extend(f"  - {v}" for v in self.violations)
        return "\n".join(lines)


Hook = Callable[[IBConnector], None]


class ChaosRun:
    """The live state of one seed's run (the plan is played by :meth:`play`)."""

    def __init__(self, gw: SimulatedGateway, plan: Plan, on_connector: Hook | None) -> None:
        self.gw = gw
        self.plan = plan
        self.on_connector = on_connector
        self.connector: IBConnector | None = None
        self.connectors: list[IBConnector] = []
        self.violations: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.fills: list[Fill] = []
        self.updates: list[OrderUpdate] = []
        self.events: list[OrderEvent] = []  # the audit tap, every connector's
        self.position_updates: list[Position] = []
        self.quotes: list[tuple[float, float | None, float | None]] = []
        self.consumers: list[asyncio.Task[None]] = []
        self.streams: list[tuple[Any, list[Any], str]] = []
        self.recoveries = 0
        self.prices = dict(START_PRICES)
        self.price_rng = random.Random(plan.seed ^ 0x5EED)
        self.loop_errors: list[str] = []

    # -- connector and consumers -------------------------------------------------------

    async def start_connector(self) -> None:
        connector = IBConnector(**connector_settings(self.gw.port))
        if self.on_connector is not None:
            self.on_connector(connector)
        await connector.connect()
        self.connector = connector
        self.connectors.append(connector)
        streams: list[tuple[Any, list[Any], str]] = [
            (connector.fills(), self.fills, "fills()"),
            (connector.order_updates(), self.updates, "order_updates()"),
            (connector.position_updates(), self.position_updates, "position_updates()"),
        ]
        self.streams += streams
        connector.order_events.subscribe(self.events.append)
        self.consumers += [asyncio.create_task(self._collect(*args)) for args in streams]
        self.consumers.append(asyncio.create_task(self._collect_quotes(connector)))

    async def _collect(self, stream: Any, into: list[Any], name: str) -> None:
        try:
            async for item in stream:
                into.append(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.violations.append(f"{name} ended with {type(exc).__name__}: {exc}")

    async def _collect_quotes(self, connector: IBConnector) -> None:
        try:
            async with connector.quotes("AAPL") as stream:
                async for quote in stream:
                    self.quotes.append((time.monotonic(), quote.bid, quote.ask))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if connector.state is not ConnectionState.CLOSED:
                self.violations.append(f"quotes() ended with {type(exc).__name__}: {exc}")

    async def stop_consumers(self) -> None:
        """Stop reading, keeping what the streams had delivered but not yet been read."""
        for task in self.consumers:
            task.cancel()
        for task in self.consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stream, into, _name in self.streams:
            while (item := stream.get_nowait()) is not None:
                into.append(item)
        self.consumers.clear()
        self.streams.clear()

    @property
    def conn(self) -> IBConnector:
        assert self.connector is not None
        return self.connector

    # -- playing the plan --------------------------------------------------------------

    async def play(self) -> None:
        for sym, price in START_PRICES.items():
            self.gw.set_price(sym, price)
        await self.start_connector()
        await self.expect_quotes("the first connect")
        for step in self.plan.steps:
            rng = random.Random(step.seed)
            ops = [self.run_op(op, random.Random(rng.randrange(2**32))) for op in step.ops]
            await asyncio.gather(*ops)

    async def run_op(self, op: str, rng: random.Random) -> None:
        handler: Callable[[random.Random], Awaitable[None]] = getattr(self, f"op_{op}")
        try:
            await handler(rng)
            self.outcomes[f"{op}: ok"] += 1
        except OrderRejectedError as exc:
            self.outcomes[f"{op}: rejected {exc.code}"] += 1
            if exc.code == 0:
                self.violations.append(
                    f"{op}: OrderRejectedError with code 0 (TWS refused nothing): {exc}"
                )
        except IBConnError as exc:
            self.outcomes[f"{op}: {type(exc).__name__}"] += 1
        except Exception as exc:
            self.violations.append(f"{op} raised {type(exc).__name__}: {exc!r}")

    # -- helpers -------------------------------------------------------------------------

    def quote_of(self, symbol: str) -> tuple[float, float]:
        quote = self.gw.market.quote(symbol)
        return float(quote.bid), float(quote.ask)

    def working(self, rng: random.Random, *, top_level: bool = False) -> OrderSnapshot | None:
        orders = [o for o in self.conn.orders(working_only=True) if o.status.is_working]
        if top_level:
            orders = [o for o in orders if o.parent_ref is None]
        return rng.choice(orders) if orders else None

    async def noticed(self, timeout: float = 2.0) -> None:
        """Wait until the connector noticed a drop (its state left CONNECTED)."""
        deadline = time.monotonic() + timeout
        while self.conn.state is ConnectionState.CONNECTED and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    async def recovered(self, what: str, *, timeout: float = 8.0) -> None:
        """Wait for CONNECTED again, then check that quotes flow again."""
        self.recoveries += 1
        try:
            await self.conn.wait_connected(timeout)
        except IBConnError as exc:
            self.violations.append(f"not CONNECTED {timeout} s after {what}: {exc}")
            return
        await self.expect_quotes(f"recovery from {what}")

    async def expect_quotes(self, what: str, timeout: float = 3.0) -> None:
        """Move AAPL to a new price and wait for a quote around it on quotes()."""
        price = self.walk("AAPL", self.price_rng, at_least=2)
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            # any quote after the move: the stream conflates, and a concurrent step may
            # already have moved the price again
            if any(t >= start and bid is not None for t, bid, _ask in self.quotes[-50:]):
                return
            await asyncio.sleep(0.005)
        self.violations.append(f"quotes did not resume after {what} (no quote at {price})")

    def walk(self, symbol: str, rng: random.Random, at_least: int = 1) -> float:
        ticks = rng.choice((-1, 1)) * rng.randint(at_least, 40)
        price = round(self.prices[symbol] + ticks * TICK, 2)
        price = min(max(price, START_PRICES[symbol] * 0.97), START_PRICES[symbol] * 1.03)
        price = round(price, 2)
        if price == self.prices[symbol]:
            price = round(price + TICK, 2)
        self.prices[symbol] = price
        self.gw.set_price(symbol, price)
        return price

    async def outage(
        self, start: Awaitable[Any], what: str, while_down: Callable[[], Awaitable[None]]
    ) -> None:
        """Start a fault, run ``while_down`` once the connector noticed, end, recover."""
        task = asyncio.ensure_future(start)
        deadline = time.monotonic() + 3
        while self.conn.state is ConnectionState.CONNECTED and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        await while_down()
        await task
        await self.recovered(what)

    # -- workload actions ------------------------------------------------------------------

    async def op_marketable_limit(self, rng: random.Random) -> None:
        sym = rng.choice(SYMBOLS)
        bid, ask = self.quote_of(sym)
        side = rng.choice(("BUY", "SELL"))
        price = round(ask + 0.05, 2) if side == "BUY" else round(bid - 0.05, 2)
        await self.conn.place_limit_order(
            sym, rng.choice((100, 200, 300)), side, price, wait_timeout=5
        )

    async def op_resting_limit(self, rng: random.Random) -> None:
        sym = rng.choice(SYMBOLS)
        bid, ask = self.quote_of(sym)
        side = rng.choice(("BUY", "SELL"))
        away = rng.randint(2, 30) * TICK
        price = round(bid - away, 2) if side == "BUY" else round(ask + away, 2)
        await self.conn.place_limit_order(
            sym, rng.choice((100, 200, 300, 500)), side, price, tif="GTC", wait_timeout=5
        )

    async def op_market(self, rng: random.Random) -> None:
        await self.conn.place_market_order(
            rng.choice(SYMBOLS), rng.choice((100, 200)), rng.choice(("BUY", "SELL")), wait_timeout=5
        )

    async def op_stop(self, rng: random.Random) -> None:
        sym = "AAPL"  # the symbol with a quote stream: the side check has a quote
        bid, ask = self.quote_of(sym)
        side = rng.choice(("BUY", "SELL"))
        away = rng.randint(3, 30) * TICK
        stop = round(ask + away, 2) if side == "BUY" else round(bid - away, 2)
        await self.conn.place_stop_order(sym, 100, side, stop, tif="GTC", wait_timeout=5)

    async def op_bracket(self, rng: random.Random) -> None:
        sym = rng.choice(SYMBOLS)
        bid, ask = self.quote_of(sym)
        side = rng.choice(("BUY", "SELL"))
        marketable = rng.random() < 0.5
        if side == "BUY":
            entry = round(ask + 0.02 if marketable else bid - rng.randint(1, 10) * TICK, 2)
            tp, sl = round(entry + rng.randint(5, 40) * TICK, 2), round(entry - 0.3, 2)
        else:
            entry = round(bid - 0.02 if marketable else ask + rng.randint(1, 10) * TICK, 2)
            tp, sl = round(entry - rng.randint(5, 40) * TICK, 2), round(entry + 0.3, 2)
        await self.conn.place_bracket_order(
            sym, rng.choice((100, 200)), side, entry, tp, sl, tif="GTC", wait_timeout=5
        )

    async def op_modify(self, rng: random.Random) -> None:
        order = self.working(rng)
        if order is None:
            return
        await self._modify(order, rng)

    async def _modify(self, order: OrderSnapshot, rng: random.Random) -> None:
        sym = order.symbol
        bid, ask = self.quote_of(sym)
        buy = order.action == "BUY"
        if order.stop_price is not None and order.order_type in ("STP", "stop"):
            away = rng.randint(3, 30) * TICK
            stop = round(ask + away, 2) if buy else round(bid - away, 2)
            await self.conn.modify_order(order.order_ref, stop_price=stop, wait_timeout=5)
        elif order.limit_price is not None and rng.random() < 0.6:
            if rng.random() < 0.3:  # make it marketable
                limit = round(ask + 0.03, 2) if buy else round(bid - 0.03, 2)
            else:
                away = rng.randint(2, 30) * TICK
                limit = round(bid - away, 2) if buy else round(ask + away, 2)
            await self.conn.modify_order(order.order_ref, limit_price=limit, wait_timeout=5)
        else:
            quantity = order.quantity + rng.choice((-100, 100, 200))
            if quantity <= max(order.filled, 0):
                quantity = order.quantity + 100
            await self.conn.modify_order(order.order_ref, quantity=quantity, wait_timeout=5)

    async def op_cancel(self, rng: random.Random) -> None:
        order = self.working(rng, top_level=True)
        if order is not None:
            await self.conn.cancel_order(order.order_ref, wait_timeout=5)

    async def op_cancel_all(self, rng: random.Random) -> None:
        await self.conn.cancel_all_orders(wait_timeout=5)

    async def op_move_price(self, rng: random.Random) -> None:
        self.walk(rng.choice(SYMBOLS), rng)
        await asyncio.sleep(0.02)

    def _gateway_working(self, rng: random.Random) -> Any | None:
        orders = [
            o
            for o in self.gw.broker.open_orders()
            if o.client_id == CLIENT_ID and o.status in ("Submitted", "PreSubmitted")
            and not o.awaiting_parent and o.order_type in ("LMT", "MKT")
        ]  # fmt: skip
        return rng.choice(orders) if orders else None

    async def _fill_at_gateway(self, rng: random.Random) -> None:
        order = self._gateway_working(rng)
        if order is None:
            return
        left = order.total_quantity - order.filled
        quantity = left if left <= 100 or rng.random() < 0.4 else rng.choice((50, 100))
        price = order.lmt_price
        if price is None:
            price = self.prices[order.instrument.symbol]
        await self.gw.fill(order.order_ref, quantity=min(quantity, left), price=price)

    def _correct(self, rng: random.Random) -> None:
        executions = [e for e in self.gw.executions if e.client_id == CLIENT_ID]
        if not executions:
            return
        latest: dict[str, Any] = {}
        for ex in executions:
            latest[exec_prefix(ex.exec_id)] = ex
        ex = rng.choice(sorted(latest.values(), key=lambda e: e.exec_id))
        self.gw.correct_execution(ex.exec_id, round(ex.price + rng.choice((-1, 1)) * TICK, 2))

    async def op_gateway_fill(self, rng: random.Random) -> None:
        await self._fill_at_gateway(rng)

    async def op_correction(self, rng: random.Random) -> None:
        self._correct(rng)
        await asyncio.sleep(0.01)

    # -- faults ----------------------------------------------------------------------------

    async def op_drop(self, rng: random.Random) -> None:
        await self.gw.drop_connections(CLIENT_ID)
        await self.recovered("drop")

    async def op_restart(self, rng: random.Random) -> None:
        await self.gw.restart(downtime=rng.uniform(0.05, 0.4))
        await self.recovered("restart")

    async def op_restart_rolled_back_ids(self, rng: random.Random) -> None:
        await self.gw.restart(downtime=rng.uniform(0.05, 0.3), next_valid_id=1)
        await self.recovered("restart with rolled-back order ids")

    async def op_half_open_stall(self, rng: random.Random) -> None:
        self.gw.stall(CLIENT_ID)
        deadline = time.monotonic() + 3
        while self.conn.state is ConnectionState.CONNECTED and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(rng.uniform(0, 0.3))
        self.gw.unstall(CLIENT_ID)  # TWS notices the dead socket later
        await self.recovered("half-open stall")

    async def op_lost_1100_1101(self, rng: random.Random) -> None:
        self.gw.send_error(1100, client_id=CLIENT_ID)
        await asyncio.sleep(rng.uniform(0.02, 0.25))
        self.gw.send_error(1101, client_id=CLIENT_ID)
        await self.recovered("1100 then 1101 (data lost)")

    async def op_lost_1100_1102(self, rng: random.Random) -> None:
        self.gw.send_error(1100, client_id=CLIENT_ID)
        await asyncio.sleep(rng.uniform(0.02, 0.25))
        self.gw.send_error(1102, client_id=CLIENT_ID)
        await self.recovered("1100 then 1102 (data kept)")

    async def op_lost_1100_never_restored(self, rng: random.Random) -> None:
        self.gw.send_error(1100, client_id=CLIENT_ID)
        deadline = time.monotonic() + 3  # degraded_timeout, then a reconnect
        while (
            self.conn.state in (ConnectionState.CONNECTED, ConnectionState.DEGRADED)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.005)
        await self.recovered("1100 never restored")

    async def op_farm_2103_2104(self, rng: random.Random) -> None:
        self.gw.send_error(
            2103, "Market data farm connection is broken:usfarm", client_id=CLIENT_ID
        )
        await asyncio.sleep(rng.uniform(0.02, 0.25))
        self.gw.send_error(2104, "Market data farm connection is OK:usfarm", client_id=CLIENT_ID)
        await self.recovered("2103 then 2104")

    async def op_port_reset_1300(self, rng: random.Random) -> None:
        await self.gw.restart(downtime=rng.uniform(0.05, 0.2), new_port=0)
        await self.recovered("1300 (new port)")

    async def op_competing_session_10197(self, rng: random.Random) -> None:
        self.gw.send_error(10197, client_id=CLIENT_ID)
        await self.recovered("10197")

    async def op_trades_while_cut_off(self, rng: random.Random) -> None:
        async def trade() -> None:
            for _ in range(rng.randint(1, 3)):
                choice = rng.random()
                if choice < 0.6:
                    await self._fill_at_gateway(rng)
                elif choice < 0.8:
                    self._correct(rng)
                else:
                    self.walk(rng.choice(SYMBOLS), rng)  # resting orders may fill
                await asyncio.sleep(0)

        await self.outage(
            self.gw.restart(downtime=rng.uniform(0.15, 0.4)), "fills while cut off", trade
        )

    async def op_in_flight_place(self, rng: random.Random) -> None:
        self.gw.drop_after_next(In.PLACE_ORDER, client_id=CLIENT_ID)
        try:
            if rng.random() < 0.5:
                await self.op_marketable_limit(rng)
            else:
                await self.op_resting_limit(rng)
        finally:
            await self.recovered("an in-flight place")

    async def op_in_flight_modify(self, rng: random.Random) -> None:
        order = self.working(rng)
        if order is None:
            return
        self.gw.drop_after_next(In.PLACE_ORDER, client_id=CLIENT_ID)
        try:
            await self._modify(order, rng)
        finally:
            await self.recovered("an in-flight modify")

    async def op_in_flight_cancel(self, rng: random.Random) -> None:
        order = self.working(rng, top_level=True)
        if order is None:
            return
        self.gw.drop_after_next(In.CANCEL_ORDER, client_id=CLIENT_ID)
        try:
            await self.conn.cancel_order(order.order_ref, wait_timeout=5)
        finally:
            await self.recovered("an in-flight cancel")

    async def op_drop_during_resync(self, rng: random.Random) -> None:
        msg = rng.choice((In.REQ_OPEN_ORDERS, In.REQ_EXECUTIONS, In.REQ_POSITIONS))
        self.gw.drop_after_next(msg, client_id=CLIENT_ID)
        await self.gw.drop_connections(CLIENT_ID)
        await self.recovered(f"a drop during the resync (after message {int(msg)})")

    async def op_slow_start_up_sync(self, rng: random.Random) -> None:
        timeout = connector_settings(0)["connection_timeout"]
        self.gw.delay_next(rng.choice(_SYNC_REQUESTS), rng.uniform(0.1, timeout * 0.5))
        await self.gw.drop_connections(CLIENT_ID)
        await self.recovered("a slow start-up sync")

    async def op_start_up_sync_timeout(self, rng: random.Random) -> None:
        timeout = connector_settings(0)["connection_timeout"]
        # ib_async waits up to the timeout for the sync's requests, then as long again for
        # the executions: longer than both, the answers come after the session was built
        self.gw.delay_next(rng.choice(_SYNC_REQUESTS), 2 * timeout + rng.uniform(0.2, 0.6))
        what = "a start-up sync longer than connection_timeout"
        if rng.random() < 0.5:  # the link drops with an order in flight: the resync decides
            self.gw.drop_after_next(In.PLACE_ORDER, client_id=CLIENT_ID)
            try:
                await self.op_resting_limit(rng)
            finally:
                # the place may fail (its queued message discarded at the drop) before the
                # supervisor noticed the drop: recovery starts only once it did, or the
                # quote window would run while the failed attempt waits 2 x the timeout
                await self.noticed()
                await self.recovered(f"{what} (an order in flight)", timeout=12)
            return
        await self.gw.drop_connections(CLIENT_ID)
        await self.noticed()  # then a failed attempt (the sync times out) and a new one
        await self.recovered(what, timeout=12)

    async def op_requests_frozen_while_streaming(self, rng: random.Random) -> None:
        # TWS's request handling freezes (the next heartbeat and every later request of
        # this session wait) while its market data keeps flowing: only the heartbeat's
        # heartbeat_flood_timeout finds it, within its bound; the freeze lasts longer, and
        # TWS notices the closed socket when it thaws
        settings = connector_settings(0)
        bound = sum(
            settings[k]
            for k in ("heartbeat_flood_timeout", "heartbeat_interval", "heartbeat_timeout")
        )
        self.gw.delay_next(In.REQ_CURRENT_TIME, bound + 1.5 + rng.uniform(0, 0.5))
        frozen = time.monotonic()
        deadline = frozen + bound + 1.0  # the bound, and a margin for a busy machine
        while self.conn.state is ConnectionState.CONNECTED and time.monotonic() < deadline:
            self.walk("AAPL", rng)  # a quote every 20 ms: messages keep arriving
            await asyncio.sleep(0.02)
        if self.conn.state is ConnectionState.CONNECTED:
            self.violations.append(
                f"a TWS that answered no request for {time.monotonic() - frozen:.1f} s "
                "while streaming stayed CONNECTED"
            )
        await self.recovered("requests frozen while data streams", timeout=10)

    async def op_drop_after_ack(self, rng: random.Random) -> None:
        # TWS answers a place, modify or cancel (an acknowledgement, fills at once for a
        # marketable order), then the link closes: the caller resumes on the answer while
        # the rest of the read and the deferred bookkeeping meet the loss
        order = self.working(rng)
        what = rng.choice(("place", "modify", "cancel")) if order is not None else "place"
        msg = In.CANCEL_ORDER if what == "cancel" else In.PLACE_ORDER
        self.gw.drop_after_reply(msg, client_id=CLIENT_ID)
        try:
            if what == "place":
                if rng.random() < 0.5:
                    await self.op_marketable_limit(rng)
                else:
                    await self.op_resting_limit(rng)
            elif what == "modify" and order is not None:
                await self._modify(order, rng)
            elif order is not None:
                await self.conn.cancel_order(order.order_ref, wait_timeout=5)
        finally:
            await self.noticed()
            await self.recovered(f"a drop right after the answer to a {what}")

    async def op_connector_restart(self, rng: random.Random) -> None:
        old = self.conn
        await old.disconnect()
        deadline = time.monotonic() + 3  # fills held for their commission still come out
        while old.order_service.unpublished_fills() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.stop_consumers()
        await self.start_connector()
        self.recoveries += 1
        await self.expect_quotes("a connector restart")

    # -- settling and checking -------------------------------------------------------------

    async def settle(self) -> None:
        """Undo lingering faults, wait for CONNECTED and for the streams to catch up."""
        self.gw.unstall()
        try:
            await self.conn.wait_connected(12)
        except IBConnError as exc:
            self.violations.append(
                f"supervisor not CONNECTED at the end (state {self.conn.state.value}): {exc}"
            )
            return
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            if not self.check():
                return
            await asyncio.sleep(0.05)

    def check(self) -> list[str]:
        """Every invariant against the gateway's ground truth; the violations found."""
        found: list[str] = []
        found += self.check_fills()
        found += self.check_placements()
        found += self.check_positions()
        found += self.check_orders()
        found += self.check_streams()
        found += self.check_supervisor()
        return found

    def check_fills(self) -> list[str]:
        found: list[str] = []
        truth: dict[str, Any] = {}  # prefix -> latest execution
        for ex in self.gw.executions:
            if ex.client_id == CLIENT_ID:
                truth[exec_prefix(ex.exec_id)] = ex
        delivered: dict[str, list[Fill]] = {}
        for fill in self.fills:
            delivered.setdefault(fill.exec_prefix, []).append(fill)
        for prefix, ex in sorted(truth.items()):
            got = delivered.get(prefix, [])
            new = [f for f in got if f.corrects is None]
            if not new:
                found.append(f"fill {ex.exec_id} ({ex.order_ref}) never delivered by fills()")
                continue
            if len(new) > 1:
                found.append(
                    f"fill {prefix} delivered {len(new)} times by fills() "
                    f"(exec ids {[f.exec_id for f in new]})"
                )
            latest = max(got, key=lambda f: _suffix(f.exec_id))
            if latest.exec_id != ex.exec_id or latest.price != ex.price:
                found.append(
                    f"fill {prefix}: last delivered {latest.exec_id} at {latest.price}, "
                    f"the gateway has {ex.exec_id} at {ex.price}"
                )
            if latest.quantity != ex.shares:
                found.append(f"fill {prefix}: quantity {latest.quantity} != {ex.shares}")
        for prefix, got in delivered.items():
            if prefix not in truth:
                found.append(f"fills() delivered {got[0].exec_id}, unknown to the gateway")
        return found

    def check_placements(self) -> list[str]:
        found: list[str] = []
        by_id: dict[int, str] = {}
        by_ref: dict[str, int] = {}
        for message in self.gw.received:
            if message.client_id != CLIENT_ID or message.msg_id != In.PLACE_ORDER:
                continue
            request = parse_place_order(message.fields)
            ref, order_id = request.order_ref, request.order_id
            if by_id.setdefault(order_id, ref) != ref:
                found.append(
                    f"order id {order_id} sent for {ref} after {by_id[order_id]} "
                    "(TWS takes it as a modification of the other order)"
                )
            if by_ref.setdefault(ref, order_id) != order_id:
                found.append(f"order_ref {ref} placed twice (ids {by_ref[ref]} and {order_id})")
        refs = Counter(o.order_ref for o in self.gw.orders if o.client_id == CLIENT_ID)
        found += [f"the gateway holds {n} orders with ref {r}" for r, n in refs.items() if n > 1]
        return found

    def check_positions(self) -> list[str]:
        truth = {p.instrument.con_id: p.quantity for p in self.gw.positions() if p.quantity}
        ours = {p.con_id: p.quantity for p in self.conn.positions() if p.quantity}
        if truth == ours:
            return []
        return [f"positions {ours} != the gateway's {truth} (by conId)"]

    def check_orders(self) -> list[str]:
        found: list[str] = []
        truth = {o.order_ref: o for o in self.gw.orders if o.client_id == CLIENT_ID}
        known = {o.order_ref: o for o in self.conn.orders()}
        for ref, snap in known.items():
            sim = truth.get(ref)
            if sim is None:
                if snap.status not in (OrderStatus.REJECTED, OrderStatus.NOT_FOUND):
                    found.append(f"{ref}: {snap.status.value} here, unknown to the gateway")
                continue
            expected = _expected_status(sim)
            if isinstance(expected, frozenset):
                if snap.status not in expected:
                    where = "held" if expected is _NEVER_WORKED else "working"
                    found.append(
                        f"{ref}: {snap.status.value} here, {where} at the gateway "
                        f"({sim.status}, filled {sim.filled}/{sim.total_quantity})"
                    )
            elif snap.status is not expected:
                found.append(
                    f"{ref}: {snap.status.value} here, {expected.value} at the gateway "
                    f"(filled {sim.filled}/{sim.total_quantity})"
                )
            if snap.filled != sim.filled or snap.quantity != sim.total_quantity:
                found.append(
                    f"{ref}: filled {snap.filled}/{snap.quantity} here, "
                    f"{sim.filled}/{sim.total_quantity} at the gateway"
                )
        for ref, sim in truth.items():
            if ref not in known and sim.status in ("Submitted", "PreSubmitted"):
                found.append(f"{ref} works at the gateway ({sim.status}) but is unknown here")
        return found

    def check_streams(self) -> list[str]:
        """order_updates() delivers each update once, each order's in the order they were
        made, and ends every order on its status and filled quantity; position_updates()
        ends each position on its quantity."""
        found: list[str] = []
        last_update: dict[str, OrderUpdate] = {}
        delivered: set[OrderUpdate] = set()
        for update in self.updates:
            if update in delivered:
                found.append(
                    f"order_updates() delivered an update of {update.order_ref} twice "
                    f"({update.status.value}, filled {update.filled:g})"
                )
            delivered.add(update)
            previous = last_update.get(update.order_ref)
            if previous is not None and (
                update.time < previous.time or update.filled < previous.filled
            ):
                found.append(
                    f"order_updates() delivered {update.order_ref}'s updates out of order "
                    f"({previous.status.value} filled {previous.filled:g}, then "
                    f"{update.status.value} filled {update.filled:g} made before it)"
                )
            last_update[update.order_ref] = update
        for snap in self.conn.orders():
            update = last_update.get(snap.order_ref)
            if update is None:
                if not snap.adopted:
                    found.append(
                        f"order_updates() never delivered {snap.order_ref} ({snap.status.value})"
                    )
            elif update.status is not snap.status or update.filled != snap.filled:
                found.append(
                    f"order_updates() left {snap.order_ref} at {update.status.value} "
                    f"filled {update.filled:g}, its status is {snap.status.value} "
                    f"filled {snap.filled:g}"
                )
        found += self._check_placements_announced()
        last_position: dict[int, float] = {}
        for position in self.position_updates:
            last_position[position.con_id] = position.quantity
        held = {p.con_id: p.quantity for p in self.conn.positions(include_flat=True)}
        for con_id, quantity in last_position.items():
            if held.get(con_id, 0.0) != quantity:
                found.append(
                    f"position_updates() left conId {con_id} at {quantity}, "
                    f"the position is {held.get(con_id, 0.0)}"
                )
        return found

    def _check_placements_announced(self) -> list[str]:
        """Every order placed here is announced once, first: its SUBMITTED update on
        order_updates() and its PLACE event on the audit tap (both wait for its answer
        in the handoff: dropped or repeated there, they would be missing or twice)."""
        found: list[str] = []
        first_update: dict[str, OrderUpdate] = {}
        submitted: Counter[str] = Counter()
        for update in self.updates:
            first_update.setdefault(update.order_ref, update)
            submitted[update.order_ref] += update.kind is UpdateKind.SUBMITTED
        first_event: dict[str, OrderEvent] = {}
        placed: Counter[str] = Counter()
        for event in self.events:
            if event.order_ref is not None:
                first_event.setdefault(event.order_ref, event)
                placed[event.order_ref] += event.kind is OrderEventKind.PLACE
        for snap in self.conn.orders():
            ref = snap.order_ref
            if snap.adopted:
                continue
            first = first_update.get(ref)
            if submitted[ref] != 1 or (
                first is not None and first.kind is not UpdateKind.SUBMITTED
            ):
                found.append(
                    f"order_updates() delivered {ref}'s SUBMITTED update {submitted[ref]} "
                    f"time(s), first {first.kind.value if first else 'nothing'}"
                )
            event = first_event.get(ref)
            if placed[ref] != 1 or (event is not None and event.kind is not OrderEventKind.PLACE):
                found.append(
                    f"the audit tap got {placed[ref]} PLACE event(s) of {ref}, "
                    f"first {event.kind.value if event else 'nothing'}"
                )
        return found

    def check_supervisor(self) -> list[str]:
        found = [f"unhandled in the event loop: {e}" for e in self.loop_errors]
        if self.conn.state is not ConnectionState.CONNECTED:
            found.append(f"state {self.conn.state.value} at the end, not connected")
        errors = sum(c.supervisor.handler_errors for c in self.connectors)
        if errors:
            found.append(f"{errors} event handler(s) raised (supervisor.handler_errors)")
        return found


# ib_async's start-up sync sends these in this order; delaying one delays those after it.
_SYNC_REQUESTS = (In.REQ_POSITIONS, In.REQ_OPEN_ORDERS, In.REQ_COMPLETED_ORDERS, In.REQ_EXECUTIONS)
_WORKING_FILLED = frozenset({OrderStatus.PARTIALLY_FILLED})
_WORKING_UNFILLED = frozenset({OrderStatus.SUBMITTED, OrderStatus.PRE_SUBMITTED})
_NEVER_WORKED = frozenset({OrderStatus.NOT_FOUND, OrderStatus.REJECTED, OrderStatus.CANCELLED})


def _expected_status(sim: Any) -> OrderStatus | frozenset[OrderStatus]:
    status = sim.status
    if status == "Filled":
        return OrderStatus.FILLED
    if status in ("Cancelled", "ApiCancelled"):
        return OrderStatus.CANCELLED
    if status == "Inactive":
        return OrderStatus.INACTIVE
    if status == "PendingSubmit":  # held, never transmitted (a bracket cut off mid-way)
        return _NEVER_WORKED
    return _WORKING_FILLED if sim.filled > 0 else _WORKING_UNFILLED


def _suffix(exec_id: str) -> int:
    tail = exec_id.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0


async def run_seed(
    seed: int,
    *,
    faults: tuple[str, ...] = FAULTS,
    steps: int | None = None,
    on_connector: Hook | None = None,
    time_limit: float = 60.0,
) -> SeedResult:
    """Play seed ``seed`` and check every invariant (see the module docstring).

    ``faults`` narrows the kinds drawn, ``steps`` fixes the plan's length and
    ``on_connector`` is called with every connector before it connects (the
    harness's own tests break the product through it).
    """
    plan = draw_plan(seed, faults=faults, steps=steps)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    started = time.monotonic()
    async with SimulatedGateway(port=0, config=gateway_config(seed)) as gw:
        run = ChaosRun(gw, plan, on_connector)

        def record(loop_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            run.loop_errors.append(f"{context.get('message')}: {exc!r}")

        loop.set_exception_handler(record)
        try:
            async with asyncio.timeout(time_limit):
                await run.play()
                await run.settle()
            run.violations += run.check()
        except TimeoutError:
            run.violations.append(f"the seed did not finish within {time_limit} s")
        finally:
            for connector in run.connectors:
                with contextlib.suppress(Exception):
                    await connector.disconnect()
            await run.stop_consumers()
            loop.set_exception_handler(previous)
    return SeedResult(
        seed=seed,
        plan=plan,
        violations=list(dict.fromkeys(run.violations)),
        outcomes=run.outcomes,
        elapsed=time.monotonic() - started,
        recoveries=run.recoveries,
    )
