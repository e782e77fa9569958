"""Positions and P&L from fills, the account, what-if and reconciliation (simulated gateway).

python examples/positions_pnl.py               # starts its own simulated gateway
python examples/positions_pnl.py --port 7497   # a paper TWS: only reads (no orders)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ib_async import Future

from ibconn import IBConnector, OrderSpec, Position
from ibconn.sim import SimConfig, SimulatedGateway


@contextlib.asynccontextmanager
async def gateway(port: int | None) -> AsyncIterator[Any]:
    if port is not None:
        yield None
        return
    config = SimConfig(seed=1, tick_rate=0, fill_delay=0.0, pnl_interval=0.2)
    async with SimulatedGateway(port=0, config=config) as gw:
        gw.set_price("AAPL", 190.0)
        gw.set_price("ES", 6000.0)
        yield gw


def show(position: Position) -> str:
    why = f"[{position.source.value}]"
    return f"  {why:<13} {position}"


async def follow(connector: IBConnector) -> None:
    """Print every position change (fills, marks, reconciliations); it never drops one."""
    async for position in connector.position_updates():
        print(show(position))


async def trade(connector: IBConnector, gw: SimulatedGateway) -> None:
    es = Future("ES", exchange="CME", lastTradeDateOrContractMonth="202612")
    await connector.place_market_order("AAPL", 100, "BUY")  # open
    await connector.place_market_order("AAPL", 40, "SELL")  # partial close: realizes P&L
    await connector.place_market_order("AAPL", 100, "SELL")  # through zero: short 40
    await connector.place_market_order(es, 2, "BUY")  # a future: P&L x 50
    gw.set_price("ES", 6012.0)
    await connector.place_market_order(es, 1, "SELL")
    await asyncio.sleep(0.5)  # let the marks and P&L of the gateway arrive


async def main(port: int | None) -> None:
    async with gateway(port) as gw:
        connector = IBConnector(port=port or gw.port, client_id=10, reconcile_interval=5)
        async with connector:
            reader = asyncio.create_task(follow(connector))
            if gw is not None:
                await trade(connector, gw)

            print("positions:")
            for position in connector.positions():
                print(show(position))

            summary = await connector.account_summary()
            print(f"account {summary.account} ({summary.currency}): net liquidation "
                  f"{summary.net_liquidation}, cash {summary.total_cash}, buying power "
                  f"{summary.buying_power}, margin {summary.init_margin} / "
                  f"{summary.maint_margin}")  # fmt: skip
            print("P&L:", connector.account_pnl())

            spec = OrderSpec(
                symbol="AAPL", action="BUY", quantity=500, order_type="LMT", limit_price=189.5
            )
            preview = await connector.what_if(spec)
            print(f"what-if BUY 500 AAPL: margin {preview.init_margin_before} -> "
                  f"{preview.init_margin_after}, commission {preview.commission} "
                  f"{preview.commission_currency}; nothing was placed")  # fmt: skip

            if gw is not None:
                # someone changes the position behind the connector's back ...
                gw.set_position(connector.accounts[0], "AAPL", 25, 188.0)
                # ... the timer (reconcile_interval) would find it; ask now instead
                for mismatch in await connector.reconcile_positions():
                    print("reconciled:", mismatch)
            await asyncio.sleep(0.1)
            reader.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=None)
    asyncio.run(main(parser.parse_args().port))
