"""Start a simulated gateway, connect raw ib_async to it, print a few quotes, exit.

Run with ``python examples/sim_quickstart.py``; needs no TWS and no network.
"""

from __future__ import annotations

import asyncio

from ib_async import IB, Stock

from ibconn.sim import SimConfig, SimulatedGateway


async def main() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(seed=7, tick_rate=10)) as gw:
        print(f"simulated gateway listening on {gw.host}:{gw.port}")
        ib = IB()
        await ib.connectAsync(gw.host, gw.port, clientId=1, timeout=5)
        try:
            [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
            ticker = ib.reqMktData(aapl)
            for _ in range(5):
                await ticker.updateEvent  # wait for the next update
                print(
                    f"AAPL bid {ticker.bidSize:>6.0f} x {ticker.bid:.2f}  "
                    f"ask {ticker.ask:.2f} x {ticker.askSize:<6.0f} last {ticker.last:.2f}"
                )
            bars = await ib.reqHistoricalDataAsync(aapl, "", "1 D", "1 hour", "TRADES", True)
            print(f"{len(bars)} hourly bars, last: {bars[-1]}")
        finally:
            ib.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
