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

from _harness import Gateway, machine, median, run_child, table

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
        "127.0.0.1", gw.port, args.client_id, reconnect_attempts=1, market_data_type="REALTIME"
    )
    await connector.connect()
    streams = [connector.ticks("AAPL") for _ in range(args.consumers)]
    for stream in streams:
        await stream.__aenter__()  # subscribed, and never read
    capacity = streams[0].statistics().capacity

    async def passed(total: int) -> None:
        # Nothing signals "counted": poll the streams' counters.
        def counted() -> int:
            return min(s.statistics().buffered + s.statistics().dropped for s in streams)

        while counted() < total:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.sleep(0.3)  # the snapshot's ticks
    snapshot = streams[0].statistics().buffered
    warm = 3 * capacity
    await gw.command(op="stream", symbol="AAPL", kind="mkt", count=warm)
    await passed(snapshot + warm)
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
    await passed(snapshot + warm + args.count)
    sampler.cancel()
    end_rss = _rss()
    stats = streams[0].statistics()
    for stream in streams:
        await stream.aclose()
    await connector.disconnect()
    return {
        "capacity": capacity,
        "buffered": stats.buffered,
        "dropped": stats.dropped,
        "delivered": stats.delivered,
        "accounted": stats.buffered + stats.dropped == snapshot + warm + args.count,
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
                "--consumers", str(args.consumers),
            ]  # fmt: skip
            result = await run_child(SCRIPT, child)
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
            ],
            [
                [f"{median([r[k] for r in results]):.1f}" for k in keys]
                + [f"{results[0]['buffered']:,} / {results[0]['dropped']:,}"]
            ],
        )
    )
    growth = median([max(r["peak_growth_mb"], r["sampled_growth_mb"]) for r in results])
    ok = growth <= 10 and all(r["accounted"] for r in results)
    print(f"\n- peak within 10 MB, every update buffered or dropped: {growth:.1f} MB ", end="")
    print("(met)" if ok else "(NOT met)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_run(args))))
    else:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
