"""Memory of a consumer that never reads while a million updates pass.

Usage::

    python benchmarks/memory.py [--count 1000000] [--consumers 1] [--repeats 1]

One ibconn client process opens ``connector.ticks("AAPL")`` (the default
``tick_buffer`` of 10 000, drop-oldest) and never reads it, while the
gateway (its own process) streams ``--count`` sequence-numbered updates as
fast as the socket takes them. The process's resident memory is sampled
every 20 ms (``/proc/self/statm``) and its peak read from
``getrusage().ru_maxrss``. The baseline is taken after a warm-up stream
that fills the buffer to its bound; the target is that the peak stays
within about 10 MB of it. The stream's statistics must count every update
as buffered or dropped.

**Accounting.** The stream also holds the subscription's snapshot ticks (bid, ask,
sizes, last, high, low, ...), whose number depends on the instrument and which may
arrive after any fixed sleep on a loaded machine. So nothing waits on a clock: the
run waits until the line's ``ib_async`` ticker shows the *sequence number* of the
last update of the warm-up (bid, ask or last size = sequence number). TCP keeps the
order, so by then the snapshot was counted too: the snapshot ticks are the stream's
count minus the warm-up's, reported as such, and after the measured stream the count
must have grown by exactly ``--count``. The stream's buffer also takes status events
(a line that goes stale while the gateway pauses, then fresh again): the updates are
encoded before the warm-up (``prepare``) so that the data never pauses during the
measurement, and a status event during it voids the run instead of being guessed at.
A lost connection or a sequence number that does not arrive within ``--run-limit``
seconds fails the run (non-zero exit).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Gateway,
    MeasurementError,
    fail_on_disconnect,
    hard_limit,
    machine,
    median,
    run_child,
    table,
)

SCRIPT = Path(__file__).resolve()
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def _rss() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from ibconn import IBConnector  # noqa: PLC0415

    gw = Gateway(args.port, args.control)
    connector = IBConnector(
        "127.0.0.1",
        gw.port,
        args.client_id,
        reconnect_attempts=1,
        market_data_type="REALTIME",
        heartbeat_timeout=60.0,  # as benchmarks/ingest.py: the answer queues behind the flood
    )
    await connector.connect()
    streams = [connector.ticks("AAPL") for _ in range(args.consumers)]
    for stream in streams:
        await stream.__aenter__()  # subscribed, and never read
    capacity = streams[0].statistics().capacity
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fail_on_disconnect(connector.ib, lost, "ibconn")

    def counted() -> int:
        """Updates every stream took (buffered or dropped): the least of them."""
        return min(s.statistics().buffered + s.statistics().dropped for s in streams)

    async def passed(seq: int) -> None:
        """Until the line's ticker shows sequence number ``seq`` (a size = seq)."""
        # Nothing signals it: poll, with a limit.
        deadline = asyncio.get_running_loop().time() + args.run_limit
        while True:
            if lost.done():
                lost.result()  # raises MeasurementError
            tickers = [t for t in connector.ib.tickers() if t.contract.symbol == "AAPL"]
            if any(seq in (t.bidSize, t.askSize, t.lastSize) for t in tickers):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise MeasurementError(
                    f"sequence number {seq:,} not seen within {args.run_limit:g} s "
                    f"(counted {counted():,})"
                )
            await asyncio.sleep(0.01)

    warm = 3 * capacity
    # Encoded before the warm-up: the gateway sends no data while it encodes, and a
    # pause longer than market_data_timeout would put a stale and a fresh status event
    # into the stream in the middle of the measurement.
    await gw.command(op="prepare", symbol="AAPL", kind="mkt", count=args.count)
    await gw.command(op="stream", symbol="AAPL", kind="mkt", count=warm)
    await passed(warm)  # the snapshot came before sequence number 1: counted too
    before = counted()
    status_before = streams[0].status  # the feed's latest status event (None: never one)
    snapshot = before - warm
    if not 0 <= snapshot <= 30:
        raise MeasurementError(f"{snapshot} updates besides the warm-up's: not a snapshot")
    gc.collect()
    base_rss = _rss()
    base_peak = _peak()
    samples: list[int] = []

    async def sample() -> None:
        while True:
            samples.append(_rss())
            await asyncio.sleep(0.02)

    sampler = asyncio.get_running_loop().create_task(sample())
    await gw.command(op="stream", symbol="AAPL", kind="mkt", count=args.count)
    await passed(args.count)
    sampler.cancel()
    end_rss = _rss()
    after = counted()
    if streams[0].status is not status_before:
        raise MeasurementError(
            f"a status event ({streams[0].status}) entered the stream during the measurement"
        )
    stats = streams[0].statistics()
    accounted = after - before == args.count and all(
        s.statistics().buffered + s.statistics().dropped == after for s in streams
    )
    lost.cancel()  # the disconnect below is ours
    for stream in streams:
        await stream.aclose()
    await connector.disconnect()
    return {
        "capacity": capacity,
        "buffered": stats.buffered,
        "dropped": stats.dropped,
        "delivered": stats.delivered,
        "snapshot_ticks": snapshot,
        "counted": after - before,
        "accounted": accounted,
        "base_mb": base_rss / MB,
        "max_sampled_mb": max(samples) / MB,
        "end_mb": end_rss / MB,
        "peak_growth_mb": (max(_peak(), *samples) - max(base_peak, base_rss)) / MB,
        "sampled_growth_mb": (max(samples) - base_rss) / MB,
        "samples": len(samples),
    }


async def _main(args: argparse.Namespace) -> None:
    gw = await Gateway.start()
    results = []
    try:
        for repeat in range(args.repeats):
            child = [
                "--child", "run", "--port", str(gw.port), "--control", str(gw.control_port),
                "--client-id", str(300 + repeat), "--count", str(args.count),
                "--consumers", str(args.consumers), "--run-limit", str(args.run_limit),
            ]  # fmt: skip
            result = await run_child(SCRIPT, child, timeout=args.run_limit + 60)
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    finally:
        await gw.stop()
    info = machine()
    print(
        f"\nMemory: {args.consumers} consumer(s) of connector.ticks that never read while "
        f"{args.count:,} updates pass; {args.repeats} run(s), medians. {info['nproc']} CPUs, "
        f"{info['cpu']}, Python {info['python']}, {info['date']}.\n"
    )
    keys = ["base_mb", "max_sampled_mb", "end_mb", "sampled_growth_mb", "peak_growth_mb"]
    print(
        table(
            [
                "RSS after warm-up (MB)",
                "max sampled RSS (MB)",
                "RSS at end (MB)",
                "sampled growth (MB)",
                "peak (ru_maxrss) growth (MB)",
                "buffered / dropped",
                "before update 1 (snapshot, status) + measured updates counted",
            ],
            [
                [f"{median([r[k] for r in results]):.1f}" for k in keys]
                + [
                    f"{results[0]['buffered']:,} / {results[0]['dropped']:,}",
                    f"{results[0]['snapshot_ticks']} + {results[0]['counted']:,}",
                ]
            ],
        )
    )
    growth = median([max(r["peak_growth_mb"], r["sampled_growth_mb"]) for r in results])
    ok = growth <= 10 and all(r["accounted"] for r in results)
    print(f"\n- peak within 10 MB, every update buffered or dropped: {growth:.1f} MB ", end="")
    print("(met)" if ok else "(NOT met)")
    if not ok:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--run-limit", type=float, default=180.0, help="seconds one run may take (then it fails)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=1800.0, help="seconds the whole benchmark may take"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        hard_limit(args.run_limit + 30, "benchmarks/memory.py, one run")
        try:
            print(json.dumps(asyncio.run(_run(args))))
        except MeasurementError as exc:
            sys.exit(f"the run is void: {exc}")
    else:
        hard_limit(args.time_limit, "benchmarks/memory.py")
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
