"""The floor of one ``async for`` step in CPython, against a raw handler's ``for`` step.

Usage::

    python benchmarks/async_for_floor.py [--steps 100000] [--repeats 21]

No stream, no event loop: each variant hands ``--steps`` ready ``NamedTuple``
items to the same consumer body (count the item, compare one of its fields),
and the consumer's coroutine is driven with one ``send(None)`` since nothing
ever waits. Thread CPU time per step, median and minimum of ``--repeats``
runs, the variants interleaved run by run; "× for" is the median over the
median of the plain ``for`` loop. Variants:

* ``for`` loop in a function: what a raw ib_async handler does per tick;
* async generator over a list: the least an async generator step costs;
* async generator with a status check: the shape of ``MarketStream``'s
  iterator until issue 23 (``ibconn/market_data/streams.py``);
* class with ``async def __anext__`` returning a constant: the least a
  coroutine step costs;
* class with ``async def __anext__`` over a list iterator with a status
  check: the shape of ``MarketStream``'s iterator now;
* a C-level ``__anext__`` (``itertools.chain.__next__``) returning one shared,
  already-done ``asyncio.Future``: no Python frame per step at all, the floor
  of the protocol itself (``GET_ANEXT``, ``SEND``, ``END_ASYNC_FOR``) with
  standard-library objects; not a design (every item would need its own done
  future, see the last row);
* making one done future per item (``loop.create_future()`` and
  ``set_result``): what that floor would add per item.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import hard_limit, machine, table


class Item(NamedTuple):
    """A tick-shaped item (ibconn's ``Tick`` is a ``NamedTuple`` too)."""

    time: float
    price: float
    size: float


class Status:
    """A type no item has (the stream's status events)."""


def drive(coro: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine that never waits."""
    try:
        coro.send(None)
    except StopIteration as done:
        return int(done.value)
    raise RuntimeError("the consumer waited")


async def consume(iterator: AsyncIterator[Item]) -> int:
    n = 0
    async for item in iterator:
        n += 1
        if item.size == -1.0:
            break
    return n


def plain_for(items: list[Item]) -> int:
    n = 0
    for item in items:
        n += 1
        if item.size == -1.0:
            break
    return n


async def agen(items: list[Item]) -> AsyncIterator[Item]:
    for item in items:
        yield item


async def agen_status(items: list[Item]) -> AsyncIterator[Item]:
    skip = Status
    for item in iter(items):
        if type(item) is not skip:
            yield item


class Constant:
    """``async def __anext__`` that returns the same item ``steps`` times."""

    __slots__ = ("item", "left")

    def __init__(self, item: Item, steps: int) -> None:
        self.item, self.left = item, steps

    def __aiter__(self) -> Constant:
        return self

    async def __anext__(self) -> Item:
        if self.left:
            self.left -= 1
            return self.item
        raise StopAsyncIteration


class Cursor:
    """``async def __anext__`` over a list iterator, skipping statuses (the stream's shape)."""

    __slots__ = ("ready", "skip")

    def __init__(self, items: list[Item]) -> None:
        self.ready: Iterator[Item] = iter(items)
        self.skip: type = Status

    def __aiter__(self) -> Cursor:
        return self

    async def __anext__(self) -> Item:
        skip = self.skip
        for item in self.ready:
            if type(item) is not skip:
                return item
        raise StopAsyncIteration


class CSteps(itertools.chain):  # type: ignore[type-arg]
    """``__anext__`` is ``chain.__next__``: a C call that returns the next awaitable."""

    __slots__ = ()
    __anext__ = itertools.chain.__next__

    def __aiter__(self) -> CSteps:
        return self


async def _end() -> Any:
    raise StopAsyncIteration


def _tail() -> Iterator[Coroutine[Any, Any, Any]]:
    yield _end()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--time-limit", type=float, default=600.0)
    args = parser.parse_args()
    hard_limit(args.time_limit, "benchmarks/async_for_floor.py")
    steps = args.steps
    items = [Item(0.0, 1.0, float(i)) for i in range(steps)]
    loop = asyncio.new_event_loop()
    done: asyncio.Future[Item] = loop.create_future()
    done.set_result(items[0])

    def make_futures() -> int:
        futures = []
        for item in items:
            future = loop.create_future()
            future.set_result(item)
            futures.append(future)
        return len(futures)

    variants: dict[str, Callable[[], int]] = {
        "`for` loop in a function (raw handler)": lambda: plain_for(items),
        "async generator over a list": lambda: drive(consume(agen(items))),
        "async generator + status check (ibconn before)": lambda: drive(
            consume(agen_status(items))
        ),
        "class, `async def __anext__` returning a constant": lambda: drive(
            consume(Constant(items[0], steps))
        ),
        "class, `async def __anext__` + status check (ibconn now)": lambda: drive(
            consume(Cursor(items))
        ),
        "C `__anext__` returning one shared done Future": lambda: drive(
            consume(CSteps(itertools.repeat(done, steps), _tail()))  # type: ignore[arg-type]
        ),
        "(making a done Future per item)": make_futures,
    }
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            gc.collect()
            start = time.thread_time()
            assert run() == steps, name
            runs[name].append((time.thread_time() - start) * 1e9 / steps)
    loop.close()
    base = statistics.median(runs["`for` loop in a function (raw handler)"])
    rows = [
        [name, f"{statistics.median(v):.0f}", f"{min(v):.0f}", f"{statistics.median(v) / base:.1f}"]
        for name, v in runs.items()
    ]
    info = machine()
    print(
        f"\n`async for` floor, {steps:,} steps per run, median of {args.repeats}. "
        f"{info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, {info['date']}.\n"
    )
    print(table(["variant", "ns per step", "min", "× for"], rows))


if __name__ == "__main__":
    main()
