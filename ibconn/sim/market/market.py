"""Prices of the simulated gateway: a seeded random walk or a recorded replay, per instrument.

:class:`Market` holds the current :class:`MarketQuote` of every instrument and tells
its listeners about every change (``market.add_listener(callback)``; the
callback receives the :class:`~ibconn.sim.market.instruments.Instrument` and the
live, mutable :class:`MarketQuote`: copy it with :meth:`MarketQuote.copy` to keep it).

The random walk moves the bid one tick down, leaves it, or moves it one tick
up (30/40/30 %), keeps the instrument's spread in whole ticks, redraws the
sizes, and with ``trade_probability`` prints a trade at the bid or the ask.
Each instrument has its own ``random.Random`` seeded from ``(seed, conId)``,
so the same seed gives the same sequence per instrument whatever else happens.
Forex pairs (``CASH``) never trade, as on IDEALPRO: no last, no volume.

Replay CSV (``SimConfig.replay_csv``) columns, header required::

    time,symbol,bid,ask,last,bid_size,ask_size,last_size[,volume]

``time`` is seconds (float) from the start of the recording, rows in time
order; ``symbol`` is a symbol, display name (``EURUSD``) or local symbol (``ESZ6``);
an empty cell leaves that value unchanged. Without a ``volume`` column each
trade adds its ``last_size``. Replayed instruments do not random-walk.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterable

from ibconn.core.logs import get_logger
from ibconn.core.tasks import cancel_all
from ibconn.sim.config import SimConfig
from ibconn.sim.market.clock import SimClock
from ibconn.sim.market.instruments import Instrument, InstrumentBook
from ibconn.sim.market.options import Greeks, price_option
from ibconn.sim.market.quotes import BlastResult, Change, FlowControl, MarketQuote, QuoteListener
from ibconn.sim.market.walk import RandomWalk, ReplayRow, load_replay_csv

__all__ = ["Market"]

_log = get_logger("sim")

_MAX_MODE_BATCH = 128
OPTION_REPRICE_INTERVAL = 0.1
"""Real seconds between two automatic re-pricings of one underlying's options (manual
``step``/``set_price`` re-price at once)."""
_COLD_INTERVAL = 0.25


class Market:
    """Current quotes of all instruments, the process that moves them, and its listeners."""

    def __init__(
        self,
        config: SimConfig,
        clock: SimClock | None = None,
        *,
        book: InstrumentBook | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SimClock()
        self.book = book or InstrumentBook(config.instruments)
        self.seed = config.seed if seed is None else seed
        now = self.clock.time()
        self._walks: dict[int, RandomWalk] = {}
        self._quotes: dict[int, MarketQuote] = {}
        self._options: dict[int, list[Instrument]] = {}
        """Options priced from each underlying's quotes, by the underlying's conId."""
        self._greeks: dict[int, Greeks] = {}
        self._repriced: dict[int, float] = {}
        """``time.monotonic()`` of each underlying's last option re-pricing."""
        for inst in self.book:
            if inst.sec_type == "OPT" and self.book.by_con_id(inst.under_con_id) is not None:
                self._options.setdefault(inst.under_con_id, []).append(inst)
                continue
            walk = RandomWalk(
                inst, config.start_price_of(inst), self.seed, config.trade_probability
            )
            self._walks[inst.con_id] = walk
            self._quotes[inst.con_id] = walk.initial_quote(now)
        for under_con_id, options in self._options.items():
            under = self._quotes[under_con_id]
            for option in options:
                self._quotes[option.con_id] = self._option_quote(option, under.mid, now)
        self._listeners: list[QuoteListener] = []
        self._paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._blasting: set[int] = set()
        self._replayed: set[int] = set()
        self._replay_rows: list[ReplayRow] = []
        if config.replay_csv is not None:
            self._replay_rows = load_replay_csv(config.replay_csv)
            for row in self._replay_rows:
                self._replayed.add(self.book.resolve(row.symbol).con_id)
        self.flow: FlowControl | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ----------------------------------------------------------------- queries

    def instrument(self, symbol_or_con_id: str | int) -> Instrument:
        """The instrument for a symbol, display name, local symbol or conId."""
        return self.book.resolve(symbol_or_con_id)

    def quote(self, symbol_or_con_id: str | int) -> MarketQuote:
        """The live quote of an instrument (mutable: copy it to keep it)."""
        return self._quotes[self.book.resolve(symbol_or_con_id).con_id]

    def walk(self, symbol_or_con_id: str | int) -> RandomWalk:
        """The price process of an instrument."""
        return self._walks[self.book.resolve(symbol_or_con_id).con_id]

    def greeks(self, con_id: int) -> Greeks | None:
        """The model figures of an option priced from its underlying (``None`` otherwise)."""
        return self._greeks.get(con_id)

    def _option_quote(self, option: Instrument, und_price: float, now: float) -> MarketQuote:
        bid, ask, greeks = price_option(option, und_price, now)
        self._greeks[option.con_id] = greeks
        mid = round((bid + ask) / 2, 4)
        return MarketQuote(
            con_id=option.con_id, bid=bid, ask=ask, last=float("nan"), bid_size=10.0,
            ask_size=10.0, last_size=0.0, volume=0.0, open=mid, high=mid, low=mid, close=mid,
            time=now, last_time=now,
        )  # fmt: skip

    def _reprice_options(self, under: Instrument, quote: MarketQuote) -> None:
        now = self.clock.time()
        reference = quote.mid if quote.bid > 0 and quote.ask > 0 else quote.last
        for option in self._options[under.con_id]:
            current = self._quotes[option.con_id]
            bid, ask, greeks = price_option(option, reference, now)
            self._greeks[option.con_id] = greeks
            changes = Change.NONE
            if bid != current.bid:
                changes |= Change.BID
            if ask != current.ask:
                changes |= Change.ASK
            if not changes:
                continue
            current.bid, current.ask = bid, ask
            mid = (bid + ask) / 2
            if mid > current.high:
                current.high = mid
                changes |= Change.HIGH
            if mid < current.low:
                current.low = mid
                changes |= Change.LOW
            current.time = now
            current.changes = changes
            current.seq += 1
            current.fast = False
            self._notify(option, current)

    @property
    def paused(self) -> bool:
        """True while automatic price updates are paused."""
        return self._paused

    # ----------------------------------------------------------------- listeners

    def add_listener(self, callback: QuoteListener) -> None:
        """Call ``callback(instrument, quote)`` after every quote update."""
        self._listeners.append(callback)

    def remove_listener(self, callback: QuoteListener) -> None:
        """Stop calling ``callback`` (no error if it was not registered)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    def _notify(self, inst: Instrument, quote: MarketQuote) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(inst, quote)
            except Exception:
                _log.exception("quote listener {} failed for {}", listener, inst.display_name)
        if not quote.fast and inst.con_id in self._options:
            now = time.monotonic()
            if now - self._repriced.get(inst.con_id, -math.inf) >= OPTION_REPRICE_INTERVAL:
                self._repriced[inst.con_id] = now
                self._reprice_options(inst, quote)

    # ----------------------------------------------------------------- changes

    def step(self, symbol_or_con_id: str | int | None = None, count: int = 1) -> None:
        """Advance one instrument (or all) by ``count`` random steps, notifying listeners.

        Works while paused: it is the manual way to move prices.
        """
        targets = (
            [i for i in self.book if i.con_id in self._walks]
            if symbol_or_con_id is None
            else [self.book.resolve(symbol_or_con_id)]
        )
        if any(i.con_id not in self._walks for i in targets):
            raise ValueError("options move with their underlying; step the underlying")
        for _ in range(count):
            for inst in targets:
                self._repriced.pop(inst.con_id, None)  # manual moves re-price options at once
                self._advance(inst, fast=False)

    def _advance(self, inst: Instrument, *, fast: bool, seq: int | None = None) -> None:
        quote = self._quotes[inst.con_id]
        self._walks[inst.con_id].step(quote, self.clock.time())
        quote.seq = quote.seq + 1 if seq is None else seq
        quote.fast = fast
        self._notify(inst, quote)

    def set_price(self, symbol_or_con_id: str | int, price: float) -> MarketQuote:
        """Move an instrument to ``price`` now (a trade there, bid/ask around it)."""
        if not price > 0:
            raise ValueError(f"price must be positive, got {price}")
        inst = self.book.resolve(symbol_or_con_id)
        if inst.con_id not in self._walks:
            raise ValueError(f"{inst.display_name} moves with its underlying; set that price")
        quote = self._quotes[inst.con_id]
        self._repriced.pop(inst.con_id, None)  # manual moves re-price options at once
        self._walks[inst.con_id].set_price(quote, price, self.clock.time())
        quote.seq += 1
        quote.fast = False
        self._notify(inst, quote)
        return quote

    def apply_replay(self, row: ReplayRow) -> None:
        """Apply one recorded update and notify listeners."""
        inst = self.book.resolve(row.symbol)
        quote = self._quotes[inst.con_id]
        now = self.clock.time()
        changes = Change.NONE
        if row.bid is not None or row.bid_size is not None:
            quote.bid = quote.bid if row.bid is None else row.bid
            quote.bid_size = quote.bid_size if row.bid_size is None else row.bid_size
            changes |= Change.BID
        if row.ask is not None or row.ask_size is not None:
            quote.ask = quote.ask if row.ask is None else row.ask
            quote.ask_size = quote.ask_size if row.ask_size is None else row.ask_size
            changes |= Change.ASK
        if row.last is not None:
            quote.last = row.last
            quote.last_size = quote.last_size if row.last_size is None else row.last_size
            quote.volume = quote.volume + quote.last_size if row.volume is None else row.volume
            quote.last_time = now
            changes |= Change.TRADE
            if quote.last > quote.high:
                quote.high = quote.last
                changes |= Change.HIGH
            if quote.last < quote.low:
                quote.low = quote.last
                changes |= Change.LOW
        walk = self._walks[inst.con_id]
        walk.bid_ticks = walk.to_ticks(quote.bid)
        quote.time = now
        quote.changes = changes
        quote.seq += 1
        quote.fast = False
        self._notify(inst, quote)

    def pause(self) -> None:
        """Stop automatic price updates (manual ``step``/``set_price`` still work)."""
        self._paused = True
        self._resumed.clear()

    def resume(self) -> None:
        """Restart automatic price updates."""
        self._paused = False
        self._resumed.set()

    # ----------------------------------------------------------------- drivers

    async def start(self) -> None:
        """Start the tasks that move prices (idempotent)."""
        if self._tasks:
            return
        if self._replay_rows:
            self._tasks.append(asyncio.create_task(self._run_replay(), name="sim-replay"))
        interval = self.config.tick_interval
        if interval is None:
            self._tasks.append(asyncio.create_task(self._run_max(), name="sim-market-max"))
        elif interval != float("inf"):
            self._tasks.append(asyncio.create_task(self._run_paced(interval), name="sim-market"))

    async def stop(self) -> None:
        """Stop the price tasks and wait for them."""
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)

    def _walking(self) -> list[Instrument]:
        return [
            inst
            for inst in self.book
            if inst.con_id in self._walks
            and inst.con_id not in self._blasting
            and inst.con_id not in self._replayed
        ]

    async def _run_paced(self, interval: float) -> None:
        clock = self.clock
        next_time = clock.time()
        while True:
            next_time += interval
            await clock.sleep_until(next_time)
            if not self._resumed.is_set():
                await self._resumed.wait()
                next_time = clock.time()
            now = clock.time()
            if now - next_time > 10 * interval:
                next_time = now  # fell far behind (slow loop): do not burst to catch up
            for inst in self._walking():
                self._advance(inst, fast=False)

    async def _run_max(self) -> None:
        clock = self.clock
        next_cold = clock.time()
        while True:
            if not self._resumed.is_set():
                await self._resumed.wait()
            flow = self.flow
            walking = self._walking()
            hot = [i for i in walking if flow is not None and flow.is_hot(i.con_id)]
            if hot:
                for _ in range(_MAX_MODE_BATCH):
                    for inst in hot:
                        self._advance(inst, fast=True)
                    if self._paused:
                        break
                assert flow is not None
                await flow.wait_writable([inst.con_id for inst in hot])
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.02)
            if clock.time() >= next_cold:
                next_cold = clock.time() + _COLD_INTERVAL
                if not self._paused:
                    for inst in self._walking():
                        # re-checked now: a subscriber may have arrived meanwhile
                        if flow is None or not flow.is_hot(inst.con_id):
                            self._advance(inst, fast=False)

    async def _run_replay(self) -> None:
        rows = self._replay_rows
        clock = self.clock
        while True:
            start = clock.time()
            for row in rows:
                await clock.sleep_until(start + row.offset)
                if not self._resumed.is_set():
                    await self._resumed.wait()
                self.apply_replay(row)
            if not self.config.replay_loop:
                return
            await clock.sleep(max(_COLD_INTERVAL, rows[-1].offset / max(1, len(rows))))

    async def blast(
        self, symbol_or_con_id: str | int, count: int, *, batch: int = 256
    ) -> BlastResult:
        """Send exactly ``count`` sequence-numbered updates (1..count) of one instrument
        to its subscribers as fast as their sockets take them, then stop.

        The instrument's automatic updates are suspended meanwhile, so the
        subscribers see exactly this sequence. Each update is one tick message
        per subscription (see ``docs/simulator.md``, "Fast mode").
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        inst = self.book.resolve(symbol_or_con_id)
        if inst.con_id not in self._walks:
            raise ValueError(f"{inst.display_name} moves with its underlying; blast that")
        if inst.con_id in self._blasting:
            raise RuntimeError(f"a blast of {inst.display_name} is already running")
        self._blasting.add(inst.con_id)
        marks: list[tuple[int, float]] = []
        started = time.monotonic()
        try:
            seq = 0
            while seq < count:
                upto = min(count, seq + max(1, batch))
                while seq < upto:
                    seq += 1
                    self._advance(inst, fast=True, seq=seq)
                if self.flow is not None:
                    await self.flow.wait_writable([inst.con_id])
                marks.append((seq, time.monotonic()))
                await asyncio.sleep(0)
        finally:
            self._blasting.discard(inst.con_id)
            self._quotes[inst.con_id].fast = False
        return BlastResult(
            con_id=inst.con_id,
            count=count,
            started=started,
            finished=time.monotonic(),
            marks=tuple(marks),
        )

    def instruments(self) -> Iterable[Instrument]:
        """All instruments, in configuration order."""
        return iter(self.book)
