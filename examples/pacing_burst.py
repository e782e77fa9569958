"""Pacing in action: a burst of requests against the simulated gateway.

Fires 150 contract-details requests at once at a gateway that enforces TWS's
limit (here lowered to 20 messages per second), prints the pacer's statistics
while the queue drains, then sends a cancel behind the backlog to show that it
leaves next. No TWS needed:

    python examples/pacing_burst.py
"""

from __future__ import annotations

import asyncio

from ib_async import Stock

from ibconn import IBConnector
from ibconn.sim import SimConfig, SimulatedGateway

LIMIT = 20


async def main() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(rate_limit=LIMIT)) as gw:
        connector = IBConnector(port=gw.port, max_requests_per_second=LIMIT)
        async with connector:
            ib, pacer = connector.ib, connector.pacer
            errors: list[int] = []
            ib.errorEvent += lambda req_id, code, message, contract: errors.append(code)
            print(f"{pacer!r}: at most {pacer.limit} messages in any {pacer.window:g} s")

            burst = asyncio.gather(
                *(ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD")) for _ in range(150))
            )
            await asyncio.sleep(0.5)
            ib.client.cancelOrder(123456)  # a cancel behind a backlog of data requests
            before = pacer.statistics()
            print(f"cancel sent while {before.queued_data} data requests still waited")

            while not burst.done():
                s = pacer.statistics()
                print(
                    f"queued {s.queued:3d} (critical {s.queued_critical}, orders "
                    f"{s.queued_orders}, data {s.queued_data:3d}, historical "
                    f"{s.queued_historical})  sent last second {s.sent_last_second:2d}  "
                    f"throttled {s.throttled_seconds:5.2f} s  total sent {s.sent_total}"
                )
                await asyncio.sleep(1.0)
            results = await burst
            s = pacer.statistics()
            print(f"done: {len(results)} answers, {s.sent_total} messages sent")
            print(f"statistics: {s}")
            print(f"error 100 received: {errors.count(100)}")


if __name__ == "__main__":
    asyncio.run(main())
