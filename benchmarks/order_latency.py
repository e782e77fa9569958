"""Place-to-acknowledged and place-to-filled latency: ibconn vs raw ib_async.

Both arms run in one process against one simulated gateway (``fill_delay=0``,
prices moved only by the benchmark), each on its own client id, placing
marketable BUY limit orders of 1 share one at a time and alternating order by
order, so that both see the same gateway, loop and machine state. ibconn goes
through its pacer (50 messages/s); raw ib_async through its own throttle (45/s);
orders are spaced so that neither throttles.

    python benchmarks/order_latency.py --orders 300 --rounds 3 [--gateway process]

prints p50 / p99 in milliseconds for each arm and the ratio ibconn / raw.

``--gateway loop`` (the default) runs the gateway in the benchmark's own event
loop, as the tests do: its work for each order (about 1.5 ms) is on the clock of
both arms. ``--gateway process`` runs it in its own process
(``benchmarks/_harness.py serve orders``), as TWS is: the clients' loop only
waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from ib_async import IB, LimitOrder, Stock, Trade

from ibconn import IBConnector, OrderStatus
from ibconn.sim import SimulatedGateway
from ibconn.sim.config import SimConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Gateway, hard_limit

ACK_STATUSES = {"PreSubmitted", "Submitted", "Filled"}


@dataclass
class Arm:
    name: str
    ack: list[float] = field(default_factory=list)
    fill: list[float] = field(default_factory=list)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index] * 1000


async def ibconn_once(connector: IBConnector, arm: Arm, price: float) -> None:
    start = time.perf_counter()
    handle = await connector.place_limit_order("AAPL", 1, "BUY", price)
    acked = time.perf_counter()
    await connector.wait_for_order(handle, OrderStatus.FILLED, timeout=10)
    filled = time.perf_counter()
    arm.ack.append(acked - start)
    arm.fill.append(filled - start)


async def raw_once(ib: IB, contract: Stock, arm: Arm, price: float, n: int) -> None:
    # The same shape as an application would write: futures resolved from the
    # trade's status events; times are taken when the awaiting code resumes,
    # as for ibconn (whose calls return in the loop iteration after the event).
    loop = asyncio.get_running_loop()
    ack: asyncio.Future[None] = loop.create_future()
    done: asyncio.Future[None] = loop.create_future()

    def on_status(trade: Trade) -> None:
        status = trade.orderStatus.status
        if status in ACK_STATUSES and not ack.done():
            ack.set_result(None)
        if status == "Filled" and not done.done():
            done.set_result(None)

    start = time.perf_counter()
    trade = ib.placeOrder(contract, LimitOrder("BUY", 1, price, orderRef=f"raw-{n}"))
    trade.statusEvent += on_status
    await ack
    acked = time.perf_counter()
    await done
    filled = time.perf_counter()
    trade.statusEvent -= on_status
    arm.ack.append(acked - start)
    arm.fill.append(filled - start)


@contextlib.asynccontextmanager
async def gateway_port(where: str) -> AsyncIterator[int]:
    """A simulated gateway with AAPL at 190 (fills at once): in this loop or its own process."""
    if where == "process":
        gw = await Gateway.start("orders")
        try:
            await gw.command(op="set_price", symbol="AAPL", price=190.0)
            yield gw.port
        finally:
            await gw.stop()
        return
    config = SimConfig(tick_rate=0, fill_delay=0.0, seed=1, message_log_size=0)
    async with SimulatedGateway(port=0, config=config) as sim:
        sim.set_price("AAPL", 190.0)
        yield sim.port


async def main(orders: int, rounds: int, gap: float, where: str = "loop") -> None:
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    async with gateway_port(where) as port:
        connector = IBConnector(port=port, client_id=1, reconnect_attempts=1)
        await connector.connect()
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=2, timeout=10)
        contract = Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(contract)
        await connector.resolve("AAPL")
        # warm-up: market rule cache, first-order paths of both
        await ibconn_once(connector, Arm("warm"), 191.0)
        await raw_once(ib, contract, Arm("warm"), 191.0, -1)
        results: list[tuple[Arm, Arm]] = []
        n = 0
        for round_no in range(rounds):
            ours, raw = Arm("ibconn"), Arm("ib_async")
            for i in range(orders):
                # alternate which arm goes first
                if (i + round_no) % 2 == 0:
                    await ibconn_once(connector, ours, 191.0)
                    await raw_once(ib, contract, raw, 191.0, n)
                else:
                    await raw_once(ib, contract, raw, 191.0, n)
                    await ibconn_once(connector, ours, 191.0)
                n += 1
                await asyncio.sleep(gap)
            results.append((ours, raw))
            print(
                f"round {round_no + 1}: ack p50 ibconn {pct(ours.ack, 0.5):.3f} ms / raw "
                f"{pct(raw.ack, 0.5):.3f} ms; fill p50 ibconn {pct(ours.fill, 0.5):.3f} ms / "
                f"raw {pct(raw.fill, 0.5):.3f} ms"
            )
        ib.disconnect()
        await connector.disconnect()
    ours_all = Arm(
        "ibconn", [x for o, _ in results for x in o.ack], [x for o, _ in results for x in o.fill]
    )
    raw_all = Arm(
        "ib_async", [x for _, r in results for x in r.ack], [x for _, r in results for x in r.fill]
    )
    print(
        f"\n{orders} orders x {rounds} rounds per arm (marketable BUY LMT 1 AAPL, fill_delay 0, "
        f"gateway in {'its own process' if where == 'process' else 'this event loop'})"
    )
    print(f"{'':10} {'ack p50':>9} {'ack p99':>9} {'fill p50':>9} {'fill p99':>9}   (ms)")
    for arm in (ours_all, raw_all):
        print(
            f"{arm.name:10} {pct(arm.ack, 0.5):9.3f} {pct(arm.ack, 0.99):9.3f} "
            f"{pct(arm.fill, 0.5):9.3f} {pct(arm.fill, 0.99):9.3f}"
        )
    print(
        f"{'ratio':10} {pct(ours_all.ack, 0.5) / pct(raw_all.ack, 0.5):9.2f} "
        f"{pct(ours_all.ack, 0.99) / pct(raw_all.ack, 0.99):9.2f} "
        f"{pct(ours_all.fill, 0.5) / pct(raw_all.fill, 0.5):9.2f} "
        f"{pct(ours_all.fill, 0.99) / pct(raw_all.fill, 0.99):9.2f}"
    )
    per_round = [statistics.median(o.fill) / statistics.median(r.fill) for o, r in results]
    print("fill p50 ratio per round: " + ", ".join(f"{x:.2f}" for x in per_round))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="orders per arm per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between order pairs")
    parser.add_argument(
        "--gateway", choices=("loop", "process"), default="loop", help="where the gateway runs"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=900.0,
        help="seconds it may take (then it fails, exit 3)",
    )
    args = parser.parse_args()
    hard_limit(args.time_limit, "benchmarks/order_latency.py")
    asyncio.run(main(args.orders, args.rounds, args.gap, args.gateway))
