"""Stream quotes, trades and bars, then fetch some history.

python examples/stream_quotes.py               # starts its own simulated gateway (fast clock)
python examples/stream_quotes.py --port 7497   # a running TWS / IB Gateway

Bars are 1-minute bars on its own gateway (30 simulated seconds per real second)
and 5-second bars on a gateway at real time (``--bar-size`` picks another size):
each stream waits for its data for as long as its bar size needs, and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from ibconn import Bar, IBConnector, MarketDataError, Quote, StreamStatus
from ibconn.sim import SimConfig, SimulatedGateway

SPEED = 30  # simulated seconds per real second on the example's own gateway


@contextlib.asynccontextmanager
async def gateway(port: int | None) -> AsyncIterator[Any]:
    if port is not None:
        yield None
        return
    # 30 simulated seconds per real second: a 1-minute bar every 2 s
    async with SimulatedGateway(port=0, config=SimConfig(clock_speed=SPEED)) as gw:
        yield gw


def side(price: float | None, size: float | None) -> str:
    return "   -   " if price is None else f"{price:.2f} x {size or 0:g}"


async def show_quotes(connector: IBConnector, symbol: str, count: int) -> None:
    # `async with` holds the market data line exactly as long as the block;
    # with_status() also yields status events (delayed data, stale, gaps).
    async with connector.quotes(symbol).with_status() as quotes:
        shown = 0
        async for item in quotes:
            if isinstance(item, StreamStatus):
                print(f"  [{item.kind.value}] {item.message}")
                continue
            quote: Quote = item
            flags = " delayed" if quote.delayed else ""
            flags += " after a gap" if quote.after_gap else ""
            print(
                f"  {quote.time:%H:%M:%S.%f} {quote.symbol} bid {side(quote.bid, quote.bid_size)}"
                f"  ask {side(quote.ask, quote.ask_size)}{flags}"
            )
            shown += 1
            if shown == count:
                break


async def show_trades(connector: IBConnector, symbol: str, count: int) -> None:
    shown = 0
    async for trade in connector.trades(symbol):  # break releases the subscription
        print(f"  {trade.time:%H:%M:%S} {trade.size or 0:g} @ {trade.price} ({trade.source})")
        shown += 1
        if shown == count:
            break


async def show_bars(connector: IBConnector, symbol: str, bar_size: str, count: int) -> None:
    async with connector.bars(symbol, bar_size) as bars:
        for _ in range(count):
            bar: Bar = await anext(bars)
            print(
                f"  {bar.start:%H:%M} O {bar.open} H {bar.high} L {bar.low} C {bar.close} "
                f"V {bar.volume or 0:g} ({bar.source})"
            )


async def within(seconds: float, what: str, step: Coroutine[Any, Any, None]) -> None:
    """Run ``step``; say so, and carry on, when its data does not come in time."""
    print(f"{what}:")
    try:
        async with asyncio.timeout(seconds):
            await step
    except TimeoutError:
        print(f"  no {what} within {seconds:g} s (market closed, or no market data permission?)")
    except MarketDataError as exc:
        print(f"  TWS refused the {what}: {exc.code} {exc.text}")


def bar_seconds(bar_size: str) -> float:
    """The length of one bar ("5 secs", "1 min", "1 hour") in seconds."""
    number, unit = bar_size.split()
    return float(number) * {"sec": 1, "min": 60, "hou": 3600}[unit[:3]]


async def main(port: int | None, bar_size: str | None) -> None:
    async with gateway(port) as gw:
        size = bar_size or ("1 min" if gw is not None else "5 secs")
        # a bar completes at the end of its period: two bars take up to three periods
        bars_wait = 3 * bar_seconds(size) / (SPEED if gw is not None else 1) + 15
        connector = IBConnector(port=port or gw.port, client_id=6, reconnect_attempts=1)
        async with connector:
            await within(30, "quotes", show_quotes(connector, "AAPL", 5))
            await within(30, "trades", show_trades(connector, "AAPL", 5))
            await within(bars_wait, f"{size} bars", show_bars(connector, "AAPL", size, 2))
            snapshot = await connector.quote("MSFT")
            print(f"MSFT snapshot: bid {snapshot.bid} ask {snapshot.ask}")
            history = await connector.historical_bars("AAPL", "1 D", "1 hour")
            print(f"history: {len(history)} hourly bars, last close {history[-1].close}")
            stats = connector.market_data.statistics()
            print(f"validation: {stats.validation}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="port of a running TWS")
    parser.add_argument("--bar-size", default=None, help='e.g. "5 secs", "1 min"')
    args = parser.parse_args()
    asyncio.run(main(args.port, args.bar_size))
