"""Pacing in action: a burst of requests against the simulated gateway.

Fires 150 contract-details requests at once at a gateway that enforces TWS's
limit (here lowered to 20 messages per second), prints the pacer's statistics
while the queue drains, then sends a cancel behind the backlog to show that it
leaves next. No TWS needed:

    python examples/pacing_burst.py               # its own simulated gateway
    python examples/pacing_burst.py --port 7497   # a running gateway (only reads)

Against a running gateway the pacer still keeps to 20 messages per second,
below TWS's own 50, so that gateway never answers with error 100 either.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

from ib_async import Stock

from ibconn import IBConnector
from ibconn.sim import SimConfig, SimulatedGateway

LIMIT = 20


@contextlib.asynccontextmanager
async def gateway(port: int | None) -> AsyncIterator[int]:
    """The port to connect to: ``port``, or that of a simulated gateway started here."""
    if port is not None:
        yield port
        return
    async with SimulatedGateway(port=0, config=SimConfig(rate_limit=LIMIT)) as gw:
        yield gw.port


async def main(port: int | None) -> None:
    async with gateway(port) as api_port:
        connector = IBConnector(port=api_port, client_id=9, max_requests_per_second=LIMIT)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="port of a running gateway")
    asyncio.run(main(parser.parse_args().port))
