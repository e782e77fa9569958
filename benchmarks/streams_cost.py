"""Per-tick cost of ibconn's broadcast streams, with 1, 10 and 100 consumers.

Usage::

    python benchmarks/streams_cost.py [--ticks 300000] [--batch 5000] [--repeats 5]
                                      [--consumers 1,10,100]

No socket: a producer publishes ``--ticks`` items in batches of ``--batch``
(as the market data service does once per TCP read) and yields to the event
loop between batches; every consumer reads every item with ``async for``.
Reported: nanoseconds per published item (all consumers included), median
of ``--repeats``. Three implementations of the same fan-out:

* ``Broadcast.publish``: ibconn's deque-based subscriptions, one call per item;
* ``Broadcast.publish_many``: the same, one call per batch;
* ``asyncio.Queue``: one ``put_nowait`` per consumer per item, ``await get()``
  per item (what ``streams.py`` does not use, for comparison).

Two references that are not streams bound the cost of a per-item consumer:

* ``async for`` floor: each consumer runs a bare async generator over the
  shared batches (a list, one ``yield`` per item, a future to wait on): the
  least any per-item ``async for`` consumer costs in this Python;
* ``for`` in a callback: each consumer is a function called once per batch
  that walks it with a plain ``for`` loop (what an ib_async event handler does).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import hard_limit, machine, table

from ibconn.core.streams import Broadcast, OverflowPolicy

_DONE = object()


async def _broadcast(ticks: int, batch: int, consumers: int, *, many: bool) -> float:
    stream: Broadcast[object] = Broadcast(
        "ticks", capacity=batch * 2, policy=OverflowPolicy.DROP_OLDEST
    )
    subs = [stream.subscribe() for _ in range(consumers)]
    counts = [0] * consumers

    async def consume(index: int) -> None:
        n = 0
        async for _item in subs[index]:
            n += 1
        counts[index] = n

    tasks = [asyncio.ensure_future(consume(i)) for i in range(consumers)]
    await asyncio.sleep(0)
    items = [object() for _ in range(batch)]
    start = time.perf_counter()
    for _ in range(ticks // batch):
        if many:
            stream.publish_many(items)
        else:
            publish = stream.publish
            for item in items:
                publish(item)
        await asyncio.sleep(0)
    stream.close()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert counts == [ticks // batch * batch] * consumers, counts
    assert all(sub.statistics().dropped == 0 for sub in subs)
    return elapsed / (ticks // batch * batch)


async def _queues(ticks: int, batch: int, consumers: int) -> float:
    queues: list[asyncio.Queue[object]] = [asyncio.Queue(batch * 2) for _ in range(consumers)]
    counts = [0] * consumers

    async def consume(index: int) -> None:
        queue, n = queues[index], 0
        while (await queue.get()) is not _DONE:
            n += 1
        counts[index] = n

    tasks = [asyncio.ensure_future(consume(i)) for i in range(consumers)]
    await asyncio.sleep(0)
    items = [object() for _ in range(batch)]
    start = time.perf_counter()
    for _ in range(ticks // batch):
        for item in items:
            for queue in queues:
                queue.put_nowait(item)
        await asyncio.sleep(0)
    for queue in queues:
        queue.put_nowait(_DONE)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert counts == [ticks // batch * batch] * consumers
    return elapsed / (ticks // batch * batch)


async def _reference(ticks: int, batch: int, consumers: int, *, callback: bool) -> float:
    log: list[list[object] | None] = []
    loop = asyncio.get_running_loop()
    wake: list[asyncio.Future[None]] = [loop.create_future()]
    counts = [0] * consumers

    async def items() -> Any:
        read = 0
        while True:
            while read < len(log):
                segment = log[read]
                read += 1
                if segment is None:
                    return
                for item in segment:
                    yield item
            await wake[0]

    async def consume(index: int) -> None:
        n = 0
        async for _item in items():
            n += 1
        counts[index] = n

    def handler(index: int) -> Callable[[list[object]], None]:
        def on_batch(segment: list[object]) -> None:
            n = counts[index]
            for _item in segment:
                n += 1
            counts[index] = n

        return on_batch

    handlers = [handler(i) for i in range(consumers)]
    tasks = [] if callback else [asyncio.ensure_future(consume(i)) for i in range(consumers)]
    await asyncio.sleep(0)
    items_ = [object() for _ in range(batch)]
    start = time.perf_counter()
    for _ in range(ticks // batch):
        if callback:
            for on_batch in handlers:
                on_batch(items_)
        else:
            log.append(items_)
            wake[0].set_result(None)
            wake[0] = loop.create_future()
        await asyncio.sleep(0)
    log.append(None)
    wake[0].set_result(None)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert counts == [ticks // batch * batch] * consumers
    return elapsed / (ticks // batch * batch)


def _median(
    make: Callable[[], Coroutine[Any, Any, float]], repeats: int
) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeats):
        gc.collect()
        runs.append(asyncio.run(make()))
    return statistics.median(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--consumers", default="1,10,100")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="seconds it may take (then it fails, exit 3)",
    )
    args = parser.parse_args()
    hard_limit(args.time_limit, "benchmarks/streams_cost.py")
    rows = []
    for consumers in [int(n) for n in args.consumers.split(",")]:
        for name, make in (
            (
                "Broadcast.publish (per item)",
                lambda c=consumers: _broadcast(args.ticks, args.batch, c, many=False),
            ),
            (
                "Broadcast.publish_many (per batch)",
                lambda c=consumers: _broadcast(args.ticks, args.batch, c, many=True),
            ),
            ("asyncio.Queue", lambda c=consumers: _queues(args.ticks, args.batch, c)),
            (
                "`async for` floor (bare async generator)",
                lambda c=consumers: _reference(args.ticks, args.batch, c, callback=False),
            ),
            (
                "`for` in a callback (no `async for`)",
                lambda c=consumers: _reference(args.ticks, args.batch, c, callback=True),
            ),
        ):
            med, runs = _median(make, args.repeats)
            rows.append(
                [
                    name,
                    consumers,
                    f"{med * 1e9:,.0f}",
                    f"{med * 1e9 / consumers:,.0f}",
                    f"{min(runs) * 1e9:,.0f}-{max(runs) * 1e9:,.0f}",
                ]
            )
            print(f"{name} x{consumers}: {med * 1e9:,.0f} ns/item", file=sys.stderr, flush=True)
    info = machine()
    print(
        f"\nStreams: {args.ticks:,} items in batches of {args.batch:,}, every consumer reads every "
        f"item with `async for`; median of {args.repeats}. {info['nproc']} CPUs, {info['cpu']}, "
        f"Python {info['python']}, {info['date']}.\n"
    )
    print(
        table(
            ["fan-out", "consumers", "ns per item", "ns per item per consumer", "range (ns/item)"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
