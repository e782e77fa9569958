"""Risk limits, exposure, exits and the kill switch (against the simulated gateway).

python examples/risk_and_exits.py            # starts its own simulated gateway
python examples/risk_and_exits.py --port 7497   # a paper TWS: places real paper orders!
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ibconn import Alert, IBConnector, RiskRejectedError
from ibconn.sim import SimConfig, SimulatedGateway

RISK = {
    "max_order_quantity": 500,
    "max_position": 300,
    "blocked_symbols": ["TSLA"],
    "max_orders_per_second": 5,
    "exposure_interval": 0.2,
    # the demo's kill switch cancels only this connector's orders, never the account's others
    "kill_switch_global_cancel": False,
}
# max_gross_exposure and max_daily_loss (docs/risk.md) count the whole account: they are
# left out so that the demo runs the same against an account that already holds positions.
CANDIDATES = ("AAPL", "MSFT", "AMZN", "GOOGL", "NVDA")


@contextlib.asynccontextmanager
async def gateway(port: int | None) -> AsyncIterator[Any]:
    if port is not None:
        yield None
        return
    config = SimConfig(tick_rate=0, fill_delay=0.0, account_update_interval=0.1)
    async with SimulatedGateway(port=0, config=config) as gw:
        gw.set_price("AAPL", 190.0)
        yield gw


def print_alert(alert: Alert) -> None:
    """An alert sink: called for every alert the bus delivers (repeats coalesced)."""
    repeats = f" (x{alert.count})" if alert.summary else ""
    print(f"  ALERT {alert.severity.value} {alert.category}: {alert.message}{repeats}")


async def refused(call: Any) -> None:
    try:
        await call
    except RiskRejectedError as exc:
        print(f"refused by {exc.limit}: limit {exc.limit_value}, order {exc.order_value}")


def pick_symbol(connector: IBConnector) -> str | None:
    """A symbol the account holds none of and this client has no working order in, so that
    the demo's position limit and exits see only what the demo itself does."""
    busy = {o.symbol for o in connector.orders(working_only=True)}
    for symbol in CANDIDATES:
        held = connector.position(symbol)
        if symbol not in busy and (held is None or held.quantity == 0):
            return symbol
    return None


async def main(port: int | None) -> None:
    async with gateway(port) as gw:
        connector = IBConnector(port=port or gw.port, client_id=8, risk=RISK)
        connector.alert_bus.add_sink(print_alert)
        async with connector:
            symbol = pick_symbol(connector)
            if symbol is None:
                print(f"the account holds every one of {', '.join(CANDIDATES)}: nothing to show")
                return
            price = (await connector.quote(symbol)).mid or 100.0
            print(f"trading {symbol} (about {price:.2f}), held before: none")

            # 1. limits refuse orders before anything is sent
            await refused(connector.place_market_order(symbol, 600, "BUY"))  # quantity
            await refused(connector.place_market_order("TSLA", 1, "BUY"))  # blocked
            updates = connector.position_updates()
            entry = await connector.place_market_order(symbol, 200, "BUY")
            await connector.wait_for_order(entry, timeout=10)
            async with updates, asyncio.timeout(10):  # the fill (and commission) moves it
                async for position in updates:
                    if position.symbol == symbol and position.quantity == 200:
                        print(f"position {symbol} {position.quantity:g}")
                        break
            below = round(price * 0.95, 2)
            await connector.place_limit_order(symbol, 100, "BUY", below)  # rests
            # the position (200) plus the working buy (100) is at max_position already
            await refused(connector.place_limit_order(symbol, 1, "BUY", below))

            # 2. exits at the gateway, one OCA group, sized to the position
            await connector.set_stop_loss(symbol, percent=3)
            plan = await connector.set_take_profit(symbol, price=round(price * 1.05, 2))
            print(f"exits: stop {plan.stop_loss}, take profit {plan.take_profit}")

            # 3. the exposure now
            exposure = connector.exposure()
            held = exposure.instrument(symbol)
            if held is not None:
                print(f"{symbol} position {held.position:g}, worst-case long {held.worst_long:g}, "
                      f"gross {exposure.gross_exposure:,.0f} {exposure.base_currency}, "
                      f"daily P&L {exposure.daily_pnl}")  # fmt: skip

            # 4. the kill switch: cancels everything ahead of the queue, refuses opening orders
            state = await connector.kill_switch("end of the demo")
            print(f"kill switch: engaged={state.engaged}, cancels sent {state.cancels_sent}")
            await refused(connector.place_market_order(symbol, 10, "BUY"))
            close = await connector.place_market_order(symbol, 200, "SELL")  # closing passes
            print("closing order:", (await connector.wait_for_order(close, timeout=10)).status)
            connector.reset_kill_switch()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="a paper TWS port")
    asyncio.run(main(parser.parse_args().port))
