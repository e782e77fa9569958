"""Fan-out: N per-item consumers of one instrument, raw ib_async against ibconn.

Usage::

    python benchmarks/fanout.py [--count 100000] [--repeats 3] [--consumers 1,10,100]
                                [--arms raw,ticks,batches]

The gateway (``benchmarks/_harness.py serve``) streams ``--count``
sequence-numbered quote updates of AAPL (one tickPrice each, size = sequence
number), as fast as the client's socket takes them. Each run of each arm is a
fresh client process; arms and consumer counts are interleaved, repeated
``--repeats`` times, and medians are reported. The figure of merit is the
client's **CPU time per update** (``time.process_time()`` from the first
update sent to the last one seen by every consumer, divided by ``--count``),
and its ratio to the raw arm with the same number of consumers.

Every consumer handles every update with the same body (count it, compare its
size with the last sequence number):

* ``raw``: unmodified ib_async: ``reqMktData``, N handlers of
  ``pendingTickersEvent``, each walking ``ticker.ticks`` of its instrument
  item by item (a plain ``for`` loop inside the event callback);
* ``ticks``: ibconn, N ``async for`` consumers of ``connector.ticks("AAPL")``
  (every tick to each, ``capacity=65536`` so that a whole 256 KiB read fits);
* ``batches``: the same N consumers reading ``stream.batches()`` (a list per
  wakeup) and walking each list with a plain ``for`` loop.

Drops are reported and must be 0. A client run that does not finish within
``--timeout`` seconds fails loudly, and so does the whole benchmark after
``--time-limit`` seconds. ``--baseline DIR`` adds the ibconn arms
run against another source tree of ibconn (for example
``git archive main | tar -x -C DIR``), interleaved with the others:
``ticks@base`` (``--baseline-arms ticks,batches`` for both).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Gateway, hard_limit, machine, median, run_child, table

SCRIPT = Path(__file__).resolve()
SYMBOL = "AAPL"
CAPACITY = 65536
LABELS = {
    "raw": "raw ib_async, `pendingTickersEvent` handlers",
    "ticks": "ibconn `ticks()`, `async for` per item",
    "batches": "ibconn `ticks()`, `batches()`",
    "ticks@base": "baseline ibconn `ticks()`, `async for` per item",
    "batches@base": "baseline ibconn `ticks()`, `batches()`",
}


async def _raw(gw: Gateway, count: int, consumers: int, client_id: int) -> dict[str, Any]:
    from ib_async import IB, Stock  # noqa: PLC0415

    ib = IB()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=20)
    contract = Stock(SYMBOL, "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    finished = [0]
    counting = [False]  # a snapshot tick (the volume) may carry the same size
    ticker = ib.reqMktData(contract)
    await asyncio.sleep(0.3)  # the snapshot passes uncounted

    def handler() -> Any:
        n = 0
        over = False

        def on_pending(tickers: Any) -> None:
            nonlocal n, over
            for t in tickers:
                if t is not ticker or over:
                    continue
                for tick in t.ticks:
                    n += 1
                    if tick.size == count and counting[0]:
                        over = True
                        finished[0] += 1
                        if finished[0] == consumers and not done.done():
                            done.set_result(time.monotonic())
                        break

        return on_pending

    for _ in range(consumers):
        ib.pendingTickersEvent += handler()
    counting[0] = True
    result = await _measure(gw, count, done)
    result["dropped"] = 0
    ib.disconnect()
    return result


async def _ibconn(
    gw: Gateway, count: int, consumers: int, client_id: int, *, batches: bool
) -> dict[str, Any]:
    from ibconn import IBConnector  # noqa: PLC0415

    connector = IBConnector(
        "127.0.0.1",
        gw.port,
        client_id,
        reconnect_attempts=1,
        market_data_type="REALTIME",
        # The run in docs/benchmarks.md was made when the gateway process encoded every
        # update in one block before sending, long enough on a loaded machine for a
        # heartbeat to go unanswered and the connector to reconnect mid-run; kept so that
        # the arms stay as measured.
        heartbeat_interval=3600,
    )
    await connector.connect()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    finished = [0]
    counting = [False]  # a snapshot tick (the volume) may carry the same size

    def finish() -> None:
        finished[0] += 1
        if finished[0] == consumers and not done.done():
            done.set_result(time.monotonic())

    async def consume(stream: Any) -> None:
        n = 0
        async for tick in stream:
            n += 1
            if tick.size == count and counting[0]:
                finish()
                return

    async def consume_batches(stream: Any) -> None:
        n = 0
        async for batch in stream.batches():
            for tick in batch:
                n += 1
                if tick.size == count and counting[0]:
                    finish()
                    return

    streams = [connector.ticks(SYMBOL, capacity=CAPACITY) for _ in range(consumers)]
    for stream in streams:
        await stream.__aenter__()
    reader = consume_batches if batches else consume
    tasks = [loop.create_task(reader(s)) for s in streams]
    await asyncio.sleep(0.3)  # the snapshot passes uncounted
    counting[0] = True
    result = await _measure(gw, count, done)
    await asyncio.gather(*tasks)
    result["dropped"] = sum(stream.statistics().dropped for stream in streams)
    for stream in streams:
        await stream.aclose()
    await connector.disconnect()
    return result


async def _measure(gw: Gateway, count: int, done: asyncio.Future[float]) -> dict[str, Any]:
    gc.collect()
    cpu0 = time.process_time()
    answer = asyncio.ensure_future(gw.command(op="stream", symbol=SYMBOL, kind="mkt", count=count))
    last = await asyncio.wait_for(done, 600)
    cpu = time.process_time() - cpu0
    sent = await answer
    return {"cpu_us": 1e6 * cpu / count, "rate": count / (last - sent["started"])}


async def _child(args: argparse.Namespace) -> None:
    gw = Gateway(args.port, args.control)
    if args.child == "raw":
        result = await _raw(gw, args.count, args.n, args.client_id)
    else:
        result = await _ibconn(
            gw, args.count, args.n, args.client_id, batches=args.child == "batches"
        )
    print(json.dumps(result))


async def _main(args: argparse.Namespace) -> None:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if args.baseline:
        arms += [f"{arm}@base" for arm in args.baseline_arms.split(",") if arm in arms]
    sizes = [int(n) for n in args.consumers.split(",")]
    gw = await Gateway.start()
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(a, n): [] for n in sizes for a in arms}
    client_id = 300
    try:
        for repeat in range(args.repeats):
            for n in sizes:
                for arm in arms:
                    client_id += 1
                    arm_name, _, base = arm.partition("@")
                    child = [
                        "--child", arm_name, "--n", str(n), "--port", str(gw.port),
                        "--control", str(gw.control_port), "--count", str(args.count),
                        "--client-id", str(client_id),
                    ]  # fmt: skip
                    saved = os.environ.get("PYTHONPATH")
                    if base:  # the child imports ibconn from the baseline tree
                        os.environ["PYTHONPATH"] = os.path.abspath(args.baseline)  # noqa: ASYNC240
                    try:
                        result = await run_child(SCRIPT, child, timeout=args.timeout)
                    except (RuntimeError, TimeoutError) as exc:
                        print(f"run {repeat + 1} of {arm} x{n} FAILED: {exc!r}", file=sys.stderr)
                        continue
                    finally:
                        if saved is None:
                            os.environ.pop("PYTHONPATH", None)
                        else:
                            os.environ["PYTHONPATH"] = saved
                    runs[(arm, n)].append(result)
                    print(
                        f"run {repeat + 1}/{args.repeats} {arm:12s} x{n:<3d} "
                        f"{result['cpu_us']:8.2f} us/update {result['rate']:>10,.0f} updates/s "
                        f"dropped {result['dropped']}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        await gw.stop()
    rows = []
    for n in sizes:
        raw = runs.get(("raw", n))
        raw_cpu = median([r["cpu_us"] for r in raw]) if raw else None
        for arm in arms:
            done = runs[(arm, n)]
            if not done:
                rows.append([LABELS[arm], n, "failed", "", "", "", ""])
                continue
            cpus = sorted(r["cpu_us"] for r in done)
            cpu = median(cpus)
            rows.append(
                [
                    LABELS[arm],
                    n,
                    f"{cpu:.2f}",
                    f"{cpus[0]:.2f}-{cpus[-1]:.2f}",
                    f"{raw_cpu / cpu:.2f}" if raw_cpu else "",
                    f"{median([r['rate'] for r in done]):,.0f}",
                    f"{max(r['dropped'] for r in done):,}",
                ]
            )
    info = machine()
    print(
        f"\nFan-out, {args.count:,} quote updates per run, {args.repeats} runs per arm, medians. "
        f"{info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"ib_async {info['ib_async']}, {info['date']}.\n"
    )
    print(
        table(
            [
                "arm",
                "consumers",
                "client CPU µs/update",
                "range",
                "× raw (CPU)",
                "updates/s",
                "dropped",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--consumers", default="1,10,100")
    parser.add_argument("--arms", default="raw,ticks,batches")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per client run")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=3600.0,
        help="seconds the whole benchmark may take (then it fails, exit 3)",
    )
    parser.add_argument("--baseline", help="another ibconn source tree to compare with")
    parser.add_argument("--baseline-arms", default="ticks", help="the arms run on --baseline")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        hard_limit(args.timeout + 30, f"benchmarks/fanout.py, arm {args.child} x{args.n}")
    else:
        hard_limit(args.time_limit, "benchmarks/fanout.py")
    asyncio.run(_child(args) if args.child else _main(args))


if __name__ == "__main__":
    main()
