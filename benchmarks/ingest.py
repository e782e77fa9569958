"""Ingest throughput: raw ib_async against ibconn, the gateway in its own process.

Usage::

    python benchmarks/ingest.py [--count 1000000] [--tbt-count 500000] [--repeats 3]
                                [--arms a,a_fast,b,c,c_batch,d_raw,d,a_uv,b_uv]
                                [--run-limit 180] [--time-limit 3600]

The gateway (``benchmarks/_harness.py serve``) runs in its own process and,
per run, streams exactly ``--count`` sequence-numbered updates of AAPL to
the subscribers (``--tbt-count`` for tick-by-tick), as fast as their
sockets take them. Each run of each arm is a fresh client process; the arms
are interleaved, repeated ``--repeats`` times, and the medians are reported.
A run's rate is ``count / (time the consumer saw the last sequence number -
time the gateway wrote the first update)``, both ``time.monotonic()``
(the same clock in both processes).

Arms:

* ``a``: raw ib_async: ``reqMktData``, ticks counted in ``pendingTickersEvent``;
* ``a_fast``: the same with ibconn's receive path installed (``install_fast_receive``);
* ``b``: ibconn: one ``async for`` consumer of ``connector.ticks("AAPL")``;
* ``c``: ibconn: ten consumers of ``connector.ticks("AAPL")``, every tick to each;
* ``c_batch``: the same ten consumers reading ``stream.batches()`` (a list per wakeup);
* ``d_raw``: raw ib_async: ``reqTickByTickData("AllLast")``, ``ticker.tickByTicks`` counted;
* ``d_raw_gc``: the same with ``tune_gc_for_streaming()`` (the GC effect alone);
* ``d``: ibconn: one consumer of ``connector.trades("AAPL")`` with ``tune_gc=True``;
* ``d_nogc``: the same with the default GC;
* ``a_uv`` / ``b_uv``: arms ``a`` and ``b`` on uvloop (``pip install -e '.[bench]'``);
  ``b_uv`` must drop nothing: the receive path returns to the loop between large
  reads, so the consumer keeps up although uvloop reads up to 32 times in a row.

Every run must be clean or it fails (non-zero exit, with the reason): a lost
connection during the measurement (a reconnect would lose the updates written on
the old socket), a last sequence number that does not arrive within
``--run-limit`` seconds, or a client process still running after it. The whole
script stops after ``--time-limit`` seconds (exit status 3).

The ibconn arms use ``capacity=65536`` per consumer so that a whole 256 KiB
read fits and nothing is dropped (drops are reported and must be 0), which
keeps them comparable with raw ib_async, where every tick is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
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
RUN_LIMIT = [180.0]  # seconds a child waits for its last sequence number (--run-limit)
SYMBOL = "AAPL"
CAPACITY = 65536
CONSUMERS_C = 10
# The heartbeat's answer queues behind every update already in the socket buffers (up to
# about 10 MB); a saturating run keeps the client that far behind on purpose, several
# seconds on a loaded machine, which the default heartbeat_timeout (5 s) would take for a
# dead link. Raw ib_async has no heartbeat at all; a reconnect still voids a run.
HEARTBEAT_TIMEOUT = 60.0
ALL_ARMS = ["a", "a_fast", "b", "c", "c_batch", "d_raw", "d_raw_gc", "d", "d_nogc", "a_uv", "b_uv"]
TBT_ARMS = {"d_raw", "d_raw_gc", "d", "d_nogc"}
UVLOOP_ARMS = {"a_uv", "b_uv"}
LABELS = {
    "a": "(a) raw ib_async, quotes",
    "a_fast": "(a') raw ib_async + ibconn receive path",
    "b": "(b) ibconn connector.ticks, 1 consumer",
    "c": "(c) ibconn connector.ticks, 10 consumers",
    "c_batch": "(c-batch) ibconn connector.ticks, 10 consumers, batches()",
    "d_raw": "(d) raw ib_async, tick-by-tick",
    "d_raw_gc": "raw ib_async, tick-by-tick, GC tuned",
    "d": "(d) ibconn connector.trades, GC tuned",
    "d_nogc": "ibconn connector.trades, default GC",
    "a_uv": "raw ib_async, quotes, uvloop",
    "b_uv": "ibconn connector.ticks, 1 consumer, uvloop",
}


# --------------------------------------------------------------------------- one run (child)


async def _raw_ib_async(gw: Gateway, count: int, client_id: int, *, fast: bool, tbt: bool) -> Any:
    from ib_async import IB, Stock  # noqa: PLC0415

    from ibconn.wire.receive import install_fast_receive  # noqa: PLC0415

    ib = IB()
    if fast:
        assert install_fast_receive(ib) is not None
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=20)
    contract = Stock("AAPL", "SMART", "USD")
    await ib.qualifyContractsAsync(contract)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    seen = [0]
    events = [0]

    def on_pending(tickers: Any) -> None:
        events[0] += 1
        for ticker in tickers:
            ticks = ticker.tickByTicks if tbt else ticker.ticks
            if ticks:
                seen[0] += len(ticks)
                if ticks[-1].size >= count and not done.done():
                    done.set_result(time.monotonic())

    if tbt:
        ib.reqTickByTickData(contract, "AllLast")
    else:
        ib.reqMktData(contract)
    await asyncio.sleep(0.3)  # the snapshot
    ib.pendingTickersEvent += on_pending
    seen[0] = 0
    fail_on_disconnect(ib, done, "raw ib_async")
    result = await _measure(gw, count, "tbt" if tbt else "mkt", done, seen)
    result["delivered"] = seen[0]
    result["msgs_per_read"] = seen[0] / max(1, events[0])
    ib.disconnect()
    return result


async def _ibconn(
    gw: Gateway,
    count: int,
    client_id: int,
    *,
    consumers: int,
    trades: bool,
    tune_gc: bool,
    batches: bool = False,
) -> Any:
    from ibconn import IBConnector  # noqa: PLC0415

    connector = IBConnector(
        "127.0.0.1",
        gw.port,
        client_id,
        reconnect_attempts=1,
        market_data_type="REALTIME",
        tune_gc=tune_gc,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
    )
    await connector.connect()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    finished = [0]
    counts = [0] * consumers
    counting = [False]

    async def consume(index: int, stream: Any) -> None:
        n = 0
        async for item in stream:
            if counting[0]:
                n += 1
                if item.size == count:
                    counts[index] = n
                    finished[0] += 1
                    if finished[0] == consumers and not done.done():
                        done.set_result(time.monotonic())
                    return

    async def consume_batches(index: int, stream: Any) -> None:
        n = 0
        async for batch in stream.batches():
            if counting[0]:
                n += len(batch)
                if batch[-1].size == count:
                    counts[index] = n
                    finished[0] += 1
                    if finished[0] == consumers and not done.done():
                        done.set_result(time.monotonic())
                    return

    streams = [
        (connector.trades if trades else connector.ticks)(SYMBOL, capacity=CAPACITY)
        for _ in range(consumers)
    ]
    for stream in streams:
        await stream.__aenter__()
    reader = consume_batches if batches else consume
    tasks = [loop.create_task(reader(i, s)) for i, s in enumerate(streams)]
    await asyncio.sleep(0.3)  # the snapshot passes uncounted
    counting[0] = True
    generation = connector.session.generation if connector.session else None
    events = connector.connection_events()

    async def watch() -> None:  # any change of the connection state voids the run
        async for event in events:
            if not done.done():
                done.set_exception(
                    MeasurementError(
                        f"ibconn: {event.state.value} during the measurement: {event.reason}"
                    )
                )
            return

    watcher = loop.create_task(watch())
    try:
        result = await _measure(gw, count, "tbt" if trades else "mkt", done, counts)
    finally:
        watcher.cancel()
    session = connector.session
    if session is None or session.generation != generation:
        raise MeasurementError("ibconn: a new session started during the measurement")
    await asyncio.gather(*tasks)
    result["delivered"] = sum(counts)
    result["dropped"] = sum(stream.statistics().dropped for stream in streams)
    for stream in streams:
        await stream.aclose()
    await connector.disconnect()
    return result


async def _measure(
    gw: Gateway, count: int, kind: str, done: asyncio.Future[float], seen: list[int]
) -> Any:
    await gw.command(op="prepare", symbol=SYMBOL, kind=kind, count=count)  # encoded first
    gc.collect()
    cpu0 = time.process_time()
    answer = asyncio.ensure_future(gw.command(op="stream", symbol=SYMBOL, kind=kind, count=count))
    try:
        async with asyncio.timeout(RUN_LIMIT[0]):
            last = await done
    except TimeoutError:
        raise MeasurementError(
            f"sequence number {count:,} did not arrive within {RUN_LIMIT[0]:g} s "
            f"(counted so far: {sum(seen):,})"
        ) from None
    cpu = time.process_time() - cpu0
    sent = await answer
    seconds = last - sent["started"]
    return {
        "rate": count / seconds,
        "seconds": seconds,
        "cpu_us_per_msg": 1e6 * cpu / count,
        "count": count,
    }


async def _child(args: argparse.Namespace) -> None:
    gw = Gateway(args.port, args.control)
    arm, count, cid = args.child, args.count, args.client_id
    if arm in UVLOOP_ARMS:
        loop_type = type(asyncio.get_running_loop()).__module__
        if not loop_type.startswith("uvloop"):
            raise SystemExit(f"arm {arm} runs on a {loop_type} loop, not uvloop")
    if arm in ("a", "a_fast", "a_uv"):
        result = await _raw_ib_async(gw, count, cid, fast=arm == "a_fast", tbt=False)
    elif arm in ("d_raw", "d_raw_gc"):
        if arm == "d_raw_gc":
            from ibconn.wire.gc_tuning import tune_gc_for_streaming  # noqa: PLC0415

            tune_gc_for_streaming()
        result = await _raw_ib_async(gw, count, cid, fast=False, tbt=True)
    elif arm in ("b", "c", "c_batch", "b_uv"):
        consumers = 1 if arm in ("b", "b_uv") else CONSUMERS_C
        result = await _ibconn(
            gw,
            count,
            cid,
            consumers=consumers,
            trades=False,
            tune_gc=False,
            batches=arm == "c_batch",
        )
    elif arm in ("d", "d_nogc"):
        result = await _ibconn(gw, count, cid, consumers=1, trades=True, tune_gc=arm == "d")
    else:
        raise SystemExit(f"unknown arm {arm}")
    result["arm"] = arm
    print(json.dumps(result))


# --------------------------------------------------------------------------- orchestrator


async def _main(args: argparse.Namespace) -> None:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    gw = await Gateway.start()
    unknown = [arm for arm in arms if arm not in LABELS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ALL_ARMS)}")
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    failures: list[str] = []
    client_id = 100
    try:
        for repeat in range(args.repeats):
            for arm in arms:
                client_id += 1
                count = args.tbt_count if arm in TBT_ARMS else args.count
                child_args = [
                    "--child", arm, "--port", str(gw.port), "--control", str(gw.control_port),
                    "--count", str(count), "--client-id", str(client_id),
                    "--run-limit", str(args.run_limit),
                ]  # fmt: skip
                try:
                    result = await run_child(SCRIPT, child_args, timeout=args.run_limit + 60)
                except RuntimeError as exc:
                    print(f"run {repeat + 1} of {arm} FAILED: {exc}", file=sys.stderr, flush=True)
                    failures.append(f"run {repeat + 1} of {arm}")
                    continue
                runs[arm].append(result)
                print(
                    f"run {repeat + 1}/{args.repeats} {arm:8s} {result['rate']:>11,.0f} msg/s "
                    f"cpu {result['cpu_us_per_msg']:.2f} us/msg delivered {result['delivered']:,}"
                    + (f" dropped {result['dropped']:,}" if "dropped" in result else "")
                    + (
                        f" ({result['msgs_per_read']:,.0f} msgs/read)"
                        if "msgs_per_read" in result
                        else ""
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await gw.stop()
    _report(args, arms, runs)
    if failures:
        print(f"\nFAILED: {', '.join(failures)} (see above)", file=sys.stderr)
        raise SystemExit(1)


def _report(
    args: argparse.Namespace, arms: list[str], runs: dict[str, list[dict[str, Any]]]
) -> None:
    med = {arm: median([r["rate"] for r in runs[arm]]) for arm in arms if runs[arm]}
    base = {"a": med.get("a"), "d": med.get("d_raw"), "uv": med.get("a_uv")}
    rows = []
    for arm in arms:
        if not runs[arm]:
            rows.append([LABELS[arm], "failed", "", "", "", "", ""])
            continue
        rates = sorted(r["rate"] for r in runs[arm])
        ref = base["d"] if arm in TBT_ARMS else base["uv"] if arm in UVLOOP_ARMS else base["a"]
        ratio = f"{med[arm] / ref:.2f}" if ref else ""
        delivered = median([r["delivered"] for r in runs[arm]])
        dropped = max(r.get("dropped", 0) for r in runs[arm])
        rows.append(
            [
                LABELS[arm],
                f"{med[arm]:,.0f}",
                f"{rates[0]:,.0f}-{rates[-1]:,.0f}",
                f"{median([r['cpu_us_per_msg'] for r in runs[arm]]):.2f}",
                ratio,
                f"{delivered:,.0f}",
                f"{dropped:,.0f}",
            ]
        )
    info = machine()
    print(
        f"\nIngest, {args.count:,} quote / {args.tbt_count:,} tick-by-tick updates per run, "
        f"{args.repeats} runs per arm, medians. {info['nproc']} CPUs, {info['cpu']}, "
        f"Python {info['python']}, ib_async {info['ib_async']}, {info['date']}.\n"
    )
    print(
        table(
            [
                "arm",
                "msgs/s (median)",
                "range",
                "client CPU µs/msg",
                "× raw",
                "delivered",
                "dropped",
            ],
            rows,
        )
    )
    checks = [
        ("b/a >= 1.5", med.get("b"), med.get("a"), 1.5),
        ("c/a >= 1.0", med.get("c"), med.get("a"), 1.0),
        ("c-batch/a >= 1.0", med.get("c_batch"), med.get("a"), 1.0),
        ("d/raw >= 2.0", med.get("d"), med.get("d_raw"), 2.0),
        ("b_uv/a_uv >= 1.5", med.get("b_uv"), med.get("a_uv"), 1.5),
    ]
    print()
    for name, num, den, target in checks:
        if num and den:
            ratio = num / den
            print(f"- {name}: {ratio:.2f} ({'met' if ratio >= target else 'NOT met'})")
    for arm in arms:
        dropped = sum(r.get("dropped", 0) for r in runs[arm])
        if dropped:
            print(f"- {arm} dropped {dropped:,} updates (must be 0): NOT met")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--tbt-count", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arms", default=",".join(ALL_ARMS))
    parser.add_argument(
        "--run-limit", type=float, default=180.0, help="seconds one run may take (then it fails)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=3600.0, help="seconds the whole benchmark may take"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        RUN_LIMIT[0] = args.run_limit
        hard_limit(args.run_limit + 30, f"benchmarks/ingest.py, arm {args.child}")
        try:
            if args.child in UVLOOP_ARMS:
                _run_on_uvloop(_child(args))
            else:
                asyncio.run(_child(args))
        except MeasurementError as exc:
            sys.exit(f"arm {args.child}: the run is void: {exc}")
    else:
        hard_limit(args.time_limit, "benchmarks/ingest.py")
        asyncio.run(_main(args))


def _run_on_uvloop(main: Any) -> None:
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        main.close()
        sys.exit("the uvloop arms need uvloop: pip install -e '.[bench]'")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


if __name__ == "__main__":
    main()
