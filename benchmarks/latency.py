"""Latency from the gateway's send to the consumer's receive, at a fixed offered rate.

Usage::

    python benchmarks/latency.py [--rate 10000] [--seconds 6] [--warmup 1] [--repeats 3]

The gateway (``benchmarks/_harness.py serve``, its own process) sends
sequence-numbered AAPL updates paced at ``--rate`` per second, below
saturation, and records the ``time.monotonic()`` just before each socket
write together with the last sequence number it carried. The consumer
records ``time.monotonic()`` when it gets each sequence number. On Linux
both read CLOCK_MONOTONIC, one clock for every process, so the difference is
the latency through the loopback socket, the receive path, decoding and
(for ibconn) the market data service and the stream. The first
``--warmup`` seconds are left out. Each run is a fresh client process; the
table gives the medians over ``--repeats`` runs of each percentile.

Arms: raw ib_async (ticks read in ``pendingTickersEvent``), raw ib_async
with ibconn's receive path, and ibconn (``async for`` over
``connector.ticks("AAPL")``, default settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Gateway,
    MeasurementError,
    fail_on_disconnect,
    hard_limit,
    interleaved_runs,
    machine,
    median,
    table,
)

SCRIPT = Path(__file__).resolve()
ARMS = ["raw", "raw_fast", "ibconn"]
LABELS = {
    "raw": "raw ib_async (pendingTickersEvent)",
    "raw_fast": "raw ib_async + ibconn receive path",
    "ibconn": "ibconn connector.ticks (async for)",
}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    gw = Gateway(args.port, args.control)
    count = int(args.rate * args.seconds)
    recv = array("d", bytes(8 * (count + 1)))
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    cleanup: list[Any] = []

    if args.child in ("raw", "raw_fast"):
        from ib_async import IB, Stock  # noqa: PLC0415

        from ibconn.wire.receive import install_fast_receive  # noqa: PLC0415

        ib = IB()
        if args.child == "raw_fast":
            install_fast_receive(ib)
        await ib.connectAsync("127.0.0.1", gw.port, clientId=args.client_id, timeout=20)
        contract = Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(contract)
        ib.reqMktData(contract)
        await asyncio.sleep(0.3)

        def on_pending(tickers: Any) -> None:
            now = time.monotonic()
            for ticker in tickers:
                for tick in ticker.ticks:
                    seq = int(tick.size)
                    if 0 < seq <= count:
                        recv[seq] = now
                        if seq == count and not done.done():
                            done.set_result(None)

        ib.pendingTickersEvent += on_pending
        fail_on_disconnect(ib, done, "raw ib_async")
        cleanup.append(ib.disconnect)
    else:
        from ibconn import IBConnector  # noqa: PLC0415

        connector = IBConnector(
            "127.0.0.1", gw.port, args.client_id, reconnect_attempts=1, market_data_type="REALTIME"
        )
        await connector.connect()
        stream = connector.ticks("AAPL")
        await stream.__aenter__()
        counting = [False]

        async def consume() -> None:
            async for tick in stream:
                now = time.monotonic()
                if counting[0] and tick.size is not None:
                    seq = int(tick.size)
                    if 0 < seq <= count:
                        recv[seq] = now
                        if seq == count:
                            if not done.done():
                                done.set_result(None)
                            return

        task = loop.create_task(consume())
        fail_on_disconnect(connector.ib, done, "ibconn")
        await asyncio.sleep(0.3)
        counting[0] = True
        cleanup.append(task.cancel)

    answer = await gw.command(op="stream", symbol="AAPL", kind="mkt", count=count, rate=args.rate)
    try:
        async with asyncio.timeout(60):
            await done
    except TimeoutError:
        raise MeasurementError(f"sequence number {count:,} did not arrive within 60 s") from None
    for step in cleanup:
        step()

    warm = int(args.rate * args.warmup)
    latencies: list[float] = []
    prev = 0
    missing = 0
    for last, sent in zip(answer["mark_seq"], answer["mark_time"], strict=True):
        for seq in range(prev + 1, last + 1):
            if seq <= warm:
                continue
            if recv[seq] == 0.0:
                missing += 1
            else:
                latencies.append(recv[seq] - sent)
        prev = last
    latencies.sort()

    def pct(p: float) -> float:
        return 1e6 * latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {
        "arm": args.child,
        "samples": len(latencies),
        "missing": missing,
        "writes": len(answer["mark_seq"]),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "p999": pct(99.9),
        "max": 1e6 * latencies[-1],
        "offered": count / (answer["finished"] - answer["started"]),
    }


async def _main(args: argparse.Namespace) -> None:
    runs = await interleaved_runs(
        SCRIPT,
        ARMS,
        args.repeats,
        ["--rate", str(args.rate), "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
        timeout=300,
        report=lambda arm, result: (
            f"{arm:8s} p50 {result['p50']:7.0f} us p99 {result['p99']:7.0f} us "
            f"max {result['max']:7.0f} us ({result['samples']:,} samples, "
            f"{result['missing']} missing, offered {result['offered']:,.0f}/s in "
            f"{result['writes']:,} writes)"
        ),
        first_client_id=200,
    )
    rows = []
    for arm in ARMS:
        r = runs[arm]
        rows.append(
            [LABELS[arm]]
            + [f"{median([x[key] for x in r]):,.0f}" for key in ("p50", "p90", "p99", "p999")]
            + [f"{max(x['max'] for x in r):,.0f}", f"{sum(x['missing'] for x in r)}"]
        )
    info = machine()
    print(
        f"\nLatency at {args.rate:,.0f} updates/s offered, {args.seconds:g} s per run "
        f"(first {args.warmup:g} s left out), {args.repeats} runs per arm, medians, µs. "
        f"{info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, {info['date']}.\n"
    )
    print(table(["path", "p50", "p90", "p99", "p99.9", "max (all runs)", "missing"], rows))
    p99 = median([x["p99"] for x in runs["ibconn"]])
    print(f"\n- ibconn p99 < 1 ms: {p99:,.0f} µs ({'met' if p99 < 1000 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=1800.0,
        help="seconds it may take (then it fails, exit 3)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        hard_limit(args.seconds + 120, f"benchmarks/latency.py, arm {args.child}")
        try:
            print(json.dumps(asyncio.run(_run(args))))
        except MeasurementError as exc:
            sys.exit(f"arm {args.child}: the run is void: {exc}")
    else:
        hard_limit(args.time_limit, "benchmarks/latency.py")
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
