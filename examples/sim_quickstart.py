"""Start a simulated gateway, connect raw ib_async to it, print a few quotes, exit.

python examples/sim_quickstart.py               # its own gateway: no TWS, no network
python examples/sim_quickstart.py --port 7497   # a running one (python -m ibconn sim, TWS)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

from ib_async import IB, Stock

from ibconn.sim import SimConfig, SimulatedGateway


@contextlib.asynccontextmanager
async def gateway(port: int | None) -> AsyncIterator[int]:
    """The port to connect to: ``port``, or that of a simulated gateway started here."""
    if port is not None:
        yield port
        return
    async with SimulatedGateway(port=0, config=SimConfig(seed=7, tick_rate=10)) as gw:
        print(f"simulated gateway listening on {gw.host}:{gw.port}")
        yield gw.port


async def main(port: int | None) -> None:
    async with gateway(port) as api_port:
        ib = IB()
        await ib.connectAsync("127.0.0.1", api_port, clientId=1, timeout=5)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="port of a running gateway")
    asyncio.run(main(parser.parse_args().port))
