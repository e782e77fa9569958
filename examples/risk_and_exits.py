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
    "max_gross_exposure": 100_000,
    "max_daily_loss": 2_000,
    "blocked_symbols": ["TSLA"],
    "exposure_interval": 0.2,
}


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


async def main(port: int | None) -> None:
    async with gateway(port) as gw:
        connector = IBConnector(port=port or gw.port, client_id=8, risk=RISK)
        connector.alert_bus.add_sink(print_alert)
        async with connector:
            # 1. limits refuse orders before anything is sent
            await refused(connector.place_market_order("AAPL", 600, "BUY"))  # quantity
            await refused(connector.place_market_order("TSLA", 1, "BUY"))  # blocked
            updates = connector.position_updates()
            entry = await connector.place_market_order("AAPL", 200, "BUY")
            await connector.wait_for_order(entry, timeout=10)
            async with updates:  # the position moves once the fill (and commission) arrived
                async for position in updates:
                    if position.symbol == "AAPL" and position.quantity == 200:
                        break
            await connector.place_limit_order("AAPL", 100, "BUY", 180.0)  # rests
            # the position (200) plus the working buy (100) is at max_position already
            await refused(connector.place_limit_order("AAPL", 1, "BUY", 179.0))

            # 2. exits at the gateway, one OCA group, sized to the position
            await connector.set_stop_loss("AAPL", percent=3)
            plan = await connector.set_take_profit("AAPL", price=200.0)
            print(f"exits: stop {plan.stop_loss}, take profit {plan.take_profit}")

            # 3. the exposure now
            exposure = connector.exposure()
            aapl = exposure.instrument("AAPL")
            if aapl is not None:
                print(f"AAPL position {aapl.position:g}, worst-case long {aapl.worst_long:g}, "
                      f"gross {exposure.gross_exposure:,.0f} {exposure.base_currency}, "
                      f"daily P&L {exposure.daily_pnl}")  # fmt: skip

            # 4. the kill switch: cancels everything ahead of the queue, refuses opening orders
            state = await connector.kill_switch("end of the demo")
            print(f"kill switch: engaged={state.engaged}, cancels sent {state.cancels_sent}")
            await refused(connector.place_market_order("AAPL", 10, "BUY"))
            close = await connector.place_market_order("AAPL", 200, "SELL")  # closing passes
            print("closing order:", (await connector.wait_for_order(close, timeout=10)).status)
            connector.reset_kill_switch()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="a paper TWS port")
    asyncio.run(main(parser.parse_args().port))
