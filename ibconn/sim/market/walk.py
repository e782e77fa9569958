"""How prices move: :class:`RandomWalk` (seeded, per instrument, on its tick grid)
and the recorded replay (:func:`load_replay_csv`; columns in the
:mod:`ibconn.sim.market.market` docstring)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

from ibconn.sim.market.instruments import Instrument
from ibconn.sim.market.quotes import Change, MarketQuote, tick_decimals

__all__ = ["RandomWalk", "ReplayRow", "load_replay_csv"]


def _lot(inst: Instrument) -> int:
    if inst.sec_type == "STK":
        return 100
    if inst.sec_type == "CASH":
        return 100_000
    return 1


class RandomWalk:
    """The seeded price process of one instrument, on its tick grid (prices kept in ticks)."""

    def __init__(
        self, inst: Instrument, start_price: float, seed: int, trade_probability: float
    ) -> None:
        self.inst = inst
        self.tick = inst.min_tick
        self.decimals = tick_decimals(inst.min_tick)
        self.rng = random.Random(f"ibconn-sim:{seed}:{inst.con_id}")
        self.spread_ticks = max(1, round(inst.spread / inst.min_tick))
        self.lot = _lot(inst)
        self.trades = inst.sec_type != "CASH" and trade_probability > 0
        self.trade_probability = trade_probability
        self.bid_ticks = max(1, round(start_price / self.tick) - self.spread_ticks // 2)

    def price(self, ticks: int) -> float:
        """``ticks`` as a price, rounded to the tick grid's decimals."""
        return round(ticks * self.tick, self.decimals)

    def to_ticks(self, price: float) -> int:
        """The nearest whole number of ticks for ``price`` (at least 1)."""
        return max(1, round(price / self.tick))

    def initial_quote(self, now: float) -> MarketQuote:
        """The quote before the first step (day open = start price)."""
        bid = self.price(self.bid_ticks)
        ask = self.price(self.bid_ticks + self.spread_ticks)
        mid = round((bid + ask) / 2, self.decimals + 1)
        last = self.price(self.bid_ticks) if self.trades else float("nan")
        close = self.price(max(1, self.bid_ticks - 3 * self.spread_ticks))
        return MarketQuote(
            con_id=self.inst.con_id,
            bid=bid,
            ask=ask,
            last=last,
            bid_size=float(self.lot * 5),
            ask_size=float(self.lot * 5),
            last_size=float(self.lot) if self.trades else 0.0,
            volume=float(self.lot * 1000) if self.trades else 0.0,
            open=mid if not self.trades else last,
            high=ask if not self.trades else last,
            low=bid if not self.trades else last,
            close=close,
            time=now,
            last_time=now,
        )

    def step(self, quote: MarketQuote, now: float) -> Change:
        """Advance ``quote`` by one random step; return what changed."""
        rng = self.rng
        r = rng.random()
        move = -1 if r < 0.3 else (1 if r >= 0.7 else 0)
        if move and self.bid_ticks + move >= 1:
            self.bid_ticks += move
        changes = Change.NONE
        bid = self.price(self.bid_ticks)
        ask = self.price(self.bid_ticks + self.spread_ticks)
        bid_size = float(self.lot * rng.randint(1, 10))
        ask_size = float(self.lot * rng.randint(1, 10))
        if bid != quote.bid or bid_size != quote.bid_size:
            changes |= Change.BID
        if ask != quote.ask or ask_size != quote.ask_size:
            changes |= Change.ASK
        quote.bid, quote.ask, quote.bid_size, quote.ask_size = bid, ask, bid_size, ask_size
        if self.trades and rng.random() < self.trade_probability:
            quote.last = bid if rng.random() < 0.5 else ask
            quote.last_size = float(self.lot * rng.randint(1, 5))
            quote.volume += quote.last_size
            quote.last_time = now
            changes |= Change.TRADE
        reference = quote.last if self.trades else quote.mid
        if reference > quote.high:
            quote.high = reference
            changes |= Change.HIGH
        if reference < quote.low:
            quote.low = reference
            changes |= Change.LOW
        quote.time = now
        quote.changes = changes
        return changes

    def set_price(self, quote: MarketQuote, price: float, now: float) -> Change:
        """Move the market to ``price``: a trade there (if the instrument trades) and
        the bid/ask around it. Does not consume random numbers."""
        ticks = self.to_ticks(price)
        self.bid_ticks = max(1, ticks - self.spread_ticks // 2)
        quote.bid = self.price(self.bid_ticks)
        quote.ask = self.price(self.bid_ticks + self.spread_ticks)
        changes = Change.BID | Change.ASK
        reference = quote.mid
        if self.trades:
            quote.last = self.price(ticks)
            quote.last_size = float(self.lot)
            quote.volume += quote.last_size
            quote.last_time = now
            changes |= Change.TRADE
            reference = quote.last
        if reference > quote.high:
            quote.high = reference
            changes |= Change.HIGH
        if reference < quote.low:
            quote.low = reference
            changes |= Change.LOW
        quote.time = now
        quote.changes = changes
        return changes


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """One recorded quote update (``None`` = unchanged)."""

    offset: float
    symbol: str
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    last_size: float | None = None
    volume: float | None = None


def _cell(row: dict[str, str | None], name: str) -> float | None:
    text = (row.get(name) or "").strip()
    return float(text) if text else None


def load_replay_csv(path: str | Path) -> list[ReplayRow]:
    """Read a replay CSV (see the module docstring); rows must be in time order."""
    rows: list[ReplayRow] = []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"time", "symbol"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        first: float | None = None
        previous = -float("inf")
        for number, row in enumerate(reader, start=2):
            try:
                t = float((row.get("time") or "").strip())
            except ValueError:
                raise ValueError(f"{path}:{number}: bad time {row.get('time')!r}") from None
            if t < previous:
                raise ValueError(f"{path}:{number}: rows must be in time order")
            previous = t
            if first is None:
                first = t
            rows.append(
                ReplayRow(
                    offset=t - first,
                    symbol=(row.get("symbol") or "").strip(),
                    bid=_cell(row, "bid"),
                    ask=_cell(row, "ask"),
                    last=_cell(row, "last"),
                    bid_size=_cell(row, "bid_size"),
                    ask_size=_cell(row, "ask_size"),
                    last_size=_cell(row, "last_size"),
                    volume=_cell(row, "volume"),
                )
            )
    return rows
