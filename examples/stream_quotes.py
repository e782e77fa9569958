"""Stream quotes, trades and 1-minute bars, then fetch some history.

python examples/stream_quotes.py               # starts its own simulated gateway (fast clock)
python examples/stream_quotes.py --port 7497   # a running TWS / IB Gateway
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ibconn import Bar, IBConnector, MarketDataError, Quote, StreamStatus
from ibconn.sim import SimConfig, SimulatedGateway


@contextlib.asynccontextmanager
async def gateway(port: int | None) -> AsyncIterator[Any]:
    if port is not None:
        yield None
        return
    # 30 simulated seconds per real second: a 1-minute bar every 2 s
    async with SimulatedGateway(port=0, config=SimConfig(clock_speed=30)) as gw:
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


async def show_bars(connector: IBConnector, symbol: str, count: int) -> None:
    async with connector.bars(symbol, "1 min") as bars:
        for _ in range(count):
            bar: Bar = await anext(bars)
            print(
                f"  {bar.start:%H:%M} O {bar.open} H {bar.high} L {bar.low} C {bar.close} "
                f"V {bar.volume or 0:g} ({bar.source})"
            )


async def main(port: int | None) -> None:
    async with gateway(port) as gw:
        connector = IBConnector(port=port or gw.port, client_id=7, reconnect_attempts=1)
        async with connector:
            try:
                async with asyncio.timeout(60):
                    print("quotes:")
                    await show_quotes(connector, "AAPL", 5)
                    print("trades:")
                    await show_trades(connector, "AAPL", 5)
                    print("1-minute bars:")
                    await show_bars(connector, "AAPL", 2)
            except TimeoutError:
                print("no data within 60 s (market closed, or no market data permission?)")
            except MarketDataError as exc:
                print(f"TWS refused the data: {exc.code} {exc.text}")
            snapshot = await connector.quote("MSFT")
            print(f"MSFT snapshot: bid {snapshot.bid} ask {snapshot.ask}")
            history = await connector.historical_bars("AAPL", "1 D", "1 hour")
            print(f"history: {len(history)} hourly bars, last close {history[-1].close}")
            stats = connector.market_data.statistics()
            print(f"validation: {stats.validation}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="port of a running TWS")
    asyncio.run(main(parser.parse_args().port))
