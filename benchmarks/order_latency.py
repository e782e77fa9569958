"""Place-to-acknowledged (and place-to-filled) latency: ibconn vs raw ib_async.

Two kinds of order, each placed by both arms in one run against one simulated
gateway (``fill_delay=0``, prices moved only by the benchmark), each arm on its
own client id, one order at a time, alternating arm by arm and order by order
so that both see the same gateway, loop and machine state:

* **resting**: a BUY limit of 1 AAPL far below the market (150 against 190).
  TWS acknowledges it with a ``Submitted`` status and nothing fills, so the
  acknowledgement is all there is to wait for. The order is cancelled after
  the clock stopped (the cancel is not timed).
* **marketable**: a BUY limit of 1 AAPL above the market (191): the sim fills it
  at once, so the acknowledgement arrives together with the fill.

ibconn goes through its pacer (50 messages/s); raw ib_async through its own
throttle (45/s); orders are spaced (``--gap``) so that neither throttles, and the
run prints the pacer's throttled time to show it. Each order starts ``--gap``
after the previous one (of either arm) ended: the gateway still works on the end
of a cancel or a fill when the awaiting code resumes, and an order placed right
then would pay for it.

    python benchmarks/order_latency.py --orders 200 --rounds 3 --gateway both

prints p50 / p90 / p99 in milliseconds for each arm and kind and the ratio ibconn / raw.

``--gateway process`` (the default) runs the gateway in its own process
(``benchmarks/_harness.py serve orders``), as TWS is: the clients' loop only waits
for it. ``--gateway loop`` runs it in the benchmark's own event loop, as the tests
do: its work for each order (about 1.5 ms) is on the clock of both arms. ``both``
runs the two one after the other. ``--journal off`` turns the order journal off for the
ibconn arm (it is on by default, as a user gets it; on, it writes to a temporary file):
the ratio to raw ib_async of a run with and one without is the journal's cost.
``--time-limit`` bounds the whole run: past it the
benchmark fails loudly (exit status 2) instead of hanging.

Besides the wall-clock times, every order records the **CPU time of the client's
thread** (``time.thread_time()``): from the call to the order's socket write
("pre-write CPU") and from the call to the moment the awaiting code resumes with
the acknowledgement ("ack CPU": the work before the write, after it and on the
acknowledging read; the thread sleeps in ``select`` while the gateway works, which
costs no CPU). Unlike the wall-clock ratio, these do not move with the machine's
load: they are the client's own work on the path, per arm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import statistics
import sys
import tempfile
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
MARKET = 190.0
PRICES = {"resting": 150.0, "marketable": 191.0}
ORDER_TIMEOUT = 10.0


@dataclass
class Arm:
    name: str
    ack: list[float] = field(default_factory=list)
    fill: list[float] = field(default_factory=list)
    pre_cpu: list[float] = field(default_factory=list)
    ack_cpu: list[float] = field(default_factory=list)


class WriteClock:
    """The client thread's CPU time at the last write on the wrapped transports."""

    last = 0.0

    @classmethod
    def wrap(cls, transport: asyncio.BaseTransport) -> None:
        write = transport.write  # type: ignore[attr-defined]

        def timed(data: bytes) -> None:
            cls.last = time.thread_time()
            write(data)

        transport.write = timed  # type: ignore[attr-defined]


def record_cpu(arm: Arm, cpu_start: float) -> None:
    """The pre-write and ack CPU of the order that started at ``cpu_start``."""
    arm.ack_cpu.append(time.thread_time() - cpu_start)
    arm.pre_cpu.append(WriteClock.last - cpu_start if WriteClock.last >= cpu_start else math.nan)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds) in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index] * 1000


async def ibconn_once(connector: IBConnector, arm: Arm, kind: str) -> None:
    cpu_start = time.thread_time()
    start = time.perf_counter()
    handle = await connector.place_limit_order(
        "AAPL", 1, "BUY", PRICES[kind], ack_timeout=ORDER_TIMEOUT
    )
    acked = time.perf_counter()
    record_cpu(arm, cpu_start)
    arm.ack.append(acked - start)
    if kind == "marketable":
        await connector.wait_for_order(handle, OrderStatus.FILLED, timeout=ORDER_TIMEOUT)
        arm.fill.append(time.perf_counter() - start)
    else:
        snapshot = await connector.cancel_order(handle, timeout=ORDER_TIMEOUT)
        if snapshot.status is not OrderStatus.CANCELLED:
            raise RuntimeError(f"the resting order ended {snapshot.status}, not cancelled")


async def raw_once(ib: IB, contract: Stock, arm: Arm, kind: str, n: int) -> None:
    # The same shape as an application would write: futures resolved from the
    # trade's status events; times are taken when the awaiting code resumes,
    # as for ibconn (whose calls return in the loop iteration after the event).
    loop = asyncio.get_running_loop()
    ack: asyncio.Future[None] = loop.create_future()
    done: asyncio.Future[None] = loop.create_future()
    final = "Filled" if kind == "marketable" else "Cancelled"

    def on_status(trade: Trade) -> None:
        status = trade.orderStatus.status
        if status in ACK_STATUSES and not ack.done():
            ack.set_result(None)
        if status == final and not done.done():
            done.set_result(None)

    cpu_start = time.thread_time()
    start = time.perf_counter()
    trade = ib.placeOrder(contract, LimitOrder("BUY", 1, PRICES[kind], orderRef=f"raw-{n}"))
    trade.statusEvent += on_status
    await asyncio.wait_for(ack, ORDER_TIMEOUT)
    acked = time.perf_counter()
    record_cpu(arm, cpu_start)
    arm.ack.append(acked - start)
    if kind == "resting":
        ib.cancelOrder(trade.order)
    await asyncio.wait_for(done, ORDER_TIMEOUT)
    if kind == "marketable":
        arm.fill.append(time.perf_counter() - start)
    trade.statusEvent -= on_status


@contextlib.asynccontextmanager
async def gateway_port(where: str) -> AsyncIterator[int]:
    """A simulated gateway with AAPL at 190 (fills at once): in this loop or its own process."""
    if where == "process":
        gw = await Gateway.start("orders")
        try:
            await gw.command(op="set_price", symbol="AAPL", price=MARKET)
            yield gw.port
        finally:
            await gw.stop()
        return
    config = SimConfig(tick_rate=0, fill_delay=0.0, seed=1, message_log_size=0)
    async with SimulatedGateway(port=0, config=config) as sim:
        sim.set_price("AAPL", MARKET)
        yield sim.port


Results = dict[str, list[tuple[Arm, Arm]]]  # kind -> per round (ibconn, raw)


async def run(
    orders: int, rounds: int, gap: float, where: str, kinds: list[str], journal: bool = True
) -> Results:
    """Every round: ``orders`` orders of each kind per arm, alternating."""
    results: Results = {kind: [] for kind in kinds}
    journal_dir = tempfile.TemporaryDirectory(prefix="ibconn-bench-")
    journal_settings: dict[str, object] = (
        {"journal_path": Path(journal_dir.name) / "journal.sqlite3"}
        if journal
        else {"journal": False}
    )
    async with gateway_port(where) as port:
        connector = IBConnector(port=port, client_id=1, reconnect_attempts=1, **journal_settings)
        await connector.connect()
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=2, timeout=10)
        contract = Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(contract)
        await connector.resolve("AAPL")
        for transport in (connector.ib.client.conn.transport, ib.client.conn.transport):
            WriteClock.wrap(transport)
        # warm-up: market rule cache, first-order paths of both
        for kind in kinds:
            await ibconn_once(connector, Arm("warm"), kind)
            await raw_once(ib, contract, Arm("warm"), kind, -1)
        throttled_before = connector.pacer.statistics().throttled_seconds
        n = 0
        for round_no in range(rounds):
            arms = {kind: (Arm("ibconn"), Arm("ib_async")) for kind in kinds}
            for i in range(orders):
                for kind in kinds:
                    ours, raw = arms[kind]
                    # Alternate which arm goes first; each order starts ``gap`` after the
                    # previous one ended (the gateway still works on the end of a cancel,
                    # or of a fill, when the awaiting code resumes: an order placed right
                    # then would wait for that work, whichever arm placed it).
                    if (i + round_no) % 2 == 0:
                        await ibconn_once(connector, ours, kind)
                        await asyncio.sleep(gap)
                        await raw_once(ib, contract, raw, kind, n)
                    else:
                        await raw_once(ib, contract, raw, kind, n)
                        await asyncio.sleep(gap)
                        await ibconn_once(connector, ours, kind)
                    n += 1
                    await asyncio.sleep(gap)
            for kind in kinds:
                ours, raw = arms[kind]
                results[kind].append((ours, raw))
                ours_p50, raw_p50 = pct(ours.ack, 0.5), pct(raw.ack, 0.5)
                print(
                    f"round {round_no + 1} {kind:10}: ack p50 ibconn {ours_p50:.3f} ms"
                    f" / raw {raw_p50:.3f} ms ({ours_p50 / raw_p50:.2f})",
                    flush=True,
                )
        throttled = connector.pacer.statistics().throttled_seconds - throttled_before
        print(f"ibconn pacer throttled for {throttled:.3f} s during the measured rounds")
        ib.disconnect()
        await connector.disconnect()
        if connector.journal is not None:
            print(f"journal: {connector.journal.statistics()}")
    journal_dir.cleanup()
    return results


def report(results: Results, orders: int, rounds: int, where: str) -> None:
    place = "its own process" if where == "process" else "this event loop"
    print(
        f"\n{orders} orders x {rounds} rounds per arm and kind, BUY LMT 1 AAPL at "
        f"{MARKET:g}, fill_delay 0, gateway in {place} (ms)"
    )
    print(
        f"{'kind':10} {'arm':9} {'ack p50':>8} {'ack p90':>8} {'ack p99':>8} "
        f"{'fill p50':>9} {'fill p90':>9}"
    )
    for kind, per_round in results.items():
        ours = Arm("ibconn", [x for o, _ in per_round for x in o.ack], [])
        ours.fill = [x for o, _ in per_round for x in o.fill]
        raw = Arm("ib_async", [x for _, r in per_round for x in r.ack], [])
        raw.fill = [x for _, r in per_round for x in r.fill]
        for arm in (ours, raw):
            print(
                f"{kind:10} {arm.name:9} {pct(arm.ack, 0.5):8.3f} {pct(arm.ack, 0.9):8.3f} "
                f"{pct(arm.ack, 0.99):8.3f} {pct(arm.fill, 0.5):9.3f} {pct(arm.fill, 0.9):9.3f}"
            )
        print(
            f"{kind:10} {'ratio':9} {pct(ours.ack, 0.5) / pct(raw.ack, 0.5):8.2f} "
            f"{pct(ours.ack, 0.9) / pct(raw.ack, 0.9):8.2f} "
            f"{pct(ours.ack, 0.99) / pct(raw.ack, 0.99):8.2f} "
            f"{pct(ours.fill, 0.5) / pct(raw.fill, 0.5):9.2f} "
            f"{pct(ours.fill, 0.9) / pct(raw.fill, 0.9):9.2f}"
        )
        per = [statistics.median(o.ack) / statistics.median(r.ack) for o, r in per_round]
        print(f"{kind:10} ack p50 ratio per round: " + ", ".join(f"{x:.2f}" for x in per))
        cpu = {
            name: (
                [x * 1e6 for pair in per_round for x in pair[i].pre_cpu if not math.isnan(x)],
                [x * 1e6 for pair in per_round for x in pair[i].ack_cpu],
            )
            for i, name in enumerate(("ibconn", "ib_async"))
        }
        (ours_pre, ours_ack), (raw_pre, raw_ack) = cpu["ibconn"], cpu["ib_async"]
        print(
            f"{kind:10} client CPU p50 (us): pre-write ibconn {statistics.median(ours_pre):.0f}"
            f" / raw {statistics.median(raw_pre):.0f}; call to ack ibconn "
            f"{statistics.median(ours_ack):.0f} / raw {statistics.median(raw_ack):.0f} "
            f"({statistics.median(ours_ack) / statistics.median(raw_ack):.2f})"
        )


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    if not kinds or any(k not in PRICES for k in kinds):
        raise SystemExit(f"--kind takes resting, marketable or both, comma-separated: {kinds}")
    places = ["process", "loop"] if args.gateway == "both" else [args.gateway]
    try:
        async with asyncio.timeout(args.time_limit):
            for where in places:
                results = await run(
                    args.orders, args.rounds, args.gap, where, kinds, args.journal == "on"
                )
                report(results, args.orders, args.rounds, where)
    except TimeoutError:
        print(
            f"FAILED: order_latency.py did not finish within --time-limit {args.time_limit} s",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="orders per arm, kind and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--gap", type=float, default=0.06, help="seconds between orders (keeps both unthrottled)"
    )
    parser.add_argument(
        "--gateway",
        choices=("loop", "process", "both"),
        default="process",
        help="where the gateway runs",
    )
    parser.add_argument(
        "--kind", default="resting,marketable", help="resting, marketable or both (comma list)"
    )
    parser.add_argument(
        "--journal", choices=("on", "off"), default="on", help="the ibconn arm's order journal"
    )
    parser.add_argument(
        "--time-limit", type=float, default=900.0, help="seconds before the run fails loudly"
    )
    args = parser.parse_args()
    hard_limit(args.time_limit + 30.0, "benchmarks/order_latency.py")  # a blocked loop too
    asyncio.run(main(args))
