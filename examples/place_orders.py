"""Place, modify and cancel orders and follow their fills (against the simulated gateway).

python examples/place_orders.py            # starts its own simulated gateway
python examples/place_orders.py --port 7497   # a paper TWS: places real paper orders!
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ibconn import (
    IBConnector,
    InvalidInputError,
    OrderRejectedError,
    OrderStateUnknownError,
    OrderStatus,
)
from ibconn.sim import SimulatedGateway

PLACE_ORDER = 3  # the TWS API message id of placeOrder


@contextlib.asynccontextmanager
async def gateway(port: int | None) -> AsyncIterator[Any]:
    if port is not None:
        yield None
        return
    async with SimulatedGateway(port=0, seed=1) as gw:
        gw.set_price("AAPL", 190.0)
        yield gw


async def follow(connector: IBConnector) -> None:
    """Print every fill as it arrives (each exactly once, also across reconnects)."""
    async for fill in connector.fills():
        note = " (a correction)" if fill.corrects else ""
        print(f"  fill {fill.action.value} {fill.quantity:g} {fill.symbol} @ {fill.price} "
              f"commission {fill.commission}{note}")  # fmt: skip


async def main(port: int | None) -> None:
    async with gateway(port) as gw:
        connector = IBConnector(port=port or gw.port, client_id=7)
        async with connector:
            reader = asyncio.create_task(follow(connector))

            price = (await connector.quote("AAPL")).mid or 190.0
            tick = 0.01

            # 1. a market order: returns once TWS acknowledged it
            order = await connector.place_market_order("AAPL", 100, "BUY", tag="entry")
            final = await connector.wait_for_order(order, timeout=10)
            print(f"{order.order_ref}: {final.status.value} {final.filled:g} @ "
                  f"{final.avg_fill_price}")  # fmt: skip

            # 2. a bracket: limit entry below the market, take profit and stop loss (an OCA pair)
            entry = round(price * 0.99, 2)
            bracket = await connector.place_bracket_order(
                "AAPL", 100, "BUY", entry, round(price * 1.03, 2), round(price * 0.97, 2)
            )
            print("bracket:", *(h.status.value for h in bracket))

            # 3. bad input is refused before anything is sent
            try:
                await connector.place_limit_order("AAPL", 100, "BUY", round(entry + tick / 2, 3))
            except InvalidInputError as exc:
                print("refused:", exc)

            # 4. modify, then cancel (by order id, order_ref or handle)
            resting = await connector.place_limit_order("AAPL", 50, "SELL", round(price * 1.05, 2))
            await connector.modify_order(resting, limit_price=round(price * 1.04, 2))
            print("cancelled:", (await connector.cancel_order(resting.order_id or 0)).status)

            # 5. what to do with the two order errors. Our own simulated gateway is told to
            # reject the next order; a real one will most likely accept it.
            if gw is not None:
                gw.fail_next(PLACE_ORDER, 201, "Order rejected - reason: the demo asked for it")
            try:
                probe = await connector.place_market_order("AAPL", 1, "SELL")
            except OrderRejectedError as exc:
                print(f"rejected by TWS: {exc.code} {exc.text}")
            except OrderStateUnknownError as exc:
                # sent, not acknowledged: never place it again; its state arrives later
                status = await connector.wait_for_order(exc.order_ref, timeout=30)
                print("resolved after the reconnect:", status.status)
            else:
                done = await connector.wait_for_order(probe, timeout=10)
                print(f"accepted, no error to handle: {probe.order_ref} {done.status.value}")

            # cancel_all_orders() cancels this connector's orders only, never the account's others
            ended = await connector.cancel_all_orders()
            cancelled = [s for s in ended if s.status is OrderStatus.CANCELLED]
            print(f"cancel_all_orders: {len(cancelled)} cancelled, "
                  f"{len(connector.orders(working_only=True))} still working")  # fmt: skip
            reader.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None)
    asyncio.run(main(parser.parse_args().port))
