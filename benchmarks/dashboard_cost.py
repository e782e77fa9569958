"""Cost of the dashboard on quote ingest: ``connector.quotes()`` with and without it running.

Usage::

    python benchmarks/dashboard_cost.py [--count 300001] [--repeats 5] [--arms plain,dashboard]
                                        [--steady-seconds 10] [--run-limit 120] [--time-limit 1800]

The gateway (``benchmarks/_harness.py serve``) runs in its own process and, per run,
streams exactly ``--count`` sequence-numbered market data updates of AAPL (the sim's
fast mode: a tickPrice per update whose size is the sequence number; bid, ask and last
by ``seq % 3``, so ``--count`` is kept off a multiple of 3 to end on a quote). Each run
is a fresh client process with one ``async for`` consumer of ``connector.quotes("AAPL")``:

* ``plain``: that consumer alone;
* ``dashboard``: the same consumer while the dashboard runs headless in the same
  process and event loop (``create_app(connector, symbols=["AAPL"])`` under Textual's
  ``run_test()``: its stream consumers, its 4 Hz render timer with ``status()``, the
  compositor), watching the same symbol.

A run's rate is ``count / (time the consumer saw the last sequence number - time the
gateway wrote the first update)``.

**Steady state** (``--steady-seconds``, default 10; 0 skips it): the CPU a process uses
over that many seconds with a simulated gateway in the same process (prices of AAPL,
SPY and TSLA moving 20 times a second, ``--demo``'s position and working orders), with
and without the dashboard at 4 redraws a second watching the three symbols: what
leaving a dashboard open costs. The arms are interleaved, repeated, and the medians
compared: the ratio ``dashboard / plain`` is the dashboard's cost (1.0 = none). Quotes
conflate, so "delivered" counts what the consumer read, not what arrived.
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
    hard_limit,
    interleaved_runs,
    machine,
    median,
    run_child,
    table,
)

SCRIPT = Path(__file__).resolve()
SYMBOL = "AAPL"
ARMS = ("plain", "dashboard")
STEADY_ARMS = ("steady_plain", "steady_dashboard")
HEARTBEAT_TIMEOUT = 60.0  # a saturating run keeps the heartbeat's answer queued (see ingest.py)


async def _run(port: int, control: int, count: int, client_id: int, arm: str, limit: float) -> Any:
    from ibconn import IBConnector  # noqa: PLC0415

    gw = Gateway(port, control)
    connector = IBConnector(
        "127.0.0.1",
        port,
        client_id,
        reconnect_attempts=1,
        market_data_type="REALTIME",
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        journal=False,
    )
    await connector.connect()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    counting = [False]
    delivered = [0]

    async def consume(stream: Any) -> None:
        async for quote in stream:
            if counting[0]:
                delivered[0] += 1
                if count in (quote.bid_size, quote.ask_size):
                    done.set_result(time.monotonic())
                    return

    async with connector.quotes(SYMBOL) as stream:
        task = loop.create_task(consume(stream))
        app: Any = None
        pilot: Any = None
        if arm == "dashboard":
            from ibconn.dashboard import create_app  # noqa: PLC0415

            app = create_app(connector, symbols=[SYMBOL], refresh_hz=4)
            pilot = app.run_test(size=(150, 48))
            await pilot.__aenter__()
        await asyncio.sleep(0.5)  # the first quote passes uncounted; the dashboard mounted
        counting[0] = True
        generation = connector.session.generation if connector.session else None
        await gw.command(op="prepare", symbol=SYMBOL, kind="mkt", count=count)
        gc.collect()
        renders = app.renders if app is not None else 0
        cpu0 = time.process_time()
        answer = asyncio.ensure_future(
            gw.command(op="stream", symbol=SYMBOL, kind="mkt", count=count)
        )
        try:
            async with asyncio.timeout(limit):
                last = await done
        except TimeoutError:
            raise MeasurementError(
                f"sequence number {count:,} did not arrive in {limit:g} s"
            ) from None
        cpu = time.process_time() - cpu0
        sent = await answer
        renders = (app.renders - renders) if app is not None else 0
        if pilot is not None:
            await pilot.__aexit__(None, None, None)
        await task
    session = connector.session
    if session is None or session.generation != generation:
        raise MeasurementError("a new session started during the measurement")
    await connector.disconnect()
    seconds = last - sent["started"]
    return {
        "arm": arm,
        "rate": count / seconds,
        "seconds": seconds,
        "cpu_us_per_msg": 1e6 * cpu / count,
        "delivered": delivered[0],
        "renders": renders,
    }


async def _steady(seconds: float, dashboard: bool) -> Any:
    from ibconn import IBConnector  # noqa: PLC0415
    from ibconn.cli.dashboard import DEMO_SYMBOLS, demo_orders  # noqa: PLC0415
    from ibconn.dashboard import create_app  # noqa: PLC0415
    from ibconn.sim import SimConfig, SimulatedGateway  # noqa: PLC0415

    config = SimConfig(tick_rate=20, fill_delay=0.0, message_log_size=0)
    async with (
        SimulatedGateway(port=0, config=config) as gw,
        IBConnector(port=gw.port, journal=False) as connector,
    ):
        await demo_orders(connector)
        app = create_app(connector, symbols=DEMO_SYMBOLS, refresh_hz=4) if dashboard else None
        pilot = app.run_test(size=(150, 48)) if app is not None else None
        if pilot is not None:
            await pilot.__aenter__()
        await asyncio.sleep(1.0)
        renders = app.renders if app is not None else 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        renders = (app.renders - renders) if app is not None else 0
        if pilot is not None:
            await pilot.__aexit__(None, None, None)
    return {"cpu_share": cpu / wall, "renders": renders, "seconds": wall}


async def _steady_runs(args: argparse.Namespace) -> None:
    shares: dict[str, list[float]] = {arm: [] for arm in STEADY_ARMS}
    renders: list[float] = []
    for repeat in range(args.repeats):
        for arm in STEADY_ARMS:
            child = ["--child", arm, "--steady-seconds", str(args.steady_seconds)]
            result = await run_child(SCRIPT, child, timeout=args.steady_seconds + 60)
            shares[arm].append(result["cpu_share"])
            if arm == "steady_dashboard":
                renders.append(result["renders"] / result["seconds"])
            print(
                f"run {repeat + 1}/{args.repeats} {arm:16s} CPU {100 * result['cpu_share']:.1f} % "
                f"of a core, {result['renders']} redraws",
                file=sys.stderr,
                flush=True,
            )
    plain, dash = median(shares["steady_plain"]), median(shares["steady_dashboard"])
    print(
        f"\nSteady state, {args.steady_seconds:g} s per run, {args.repeats} runs per arm, "
        f"medians: CPU of the process (connector and in-process gateway) without the "
        f"dashboard {100 * plain:.1f} % of a core, with it {100 * dash:.1f} % "
        f"({median(renders):.1f} redraws/s): the dashboard costs {100 * (dash - plain):.1f} "
        "% of a core."
    )


async def _main(args: argparse.Namespace) -> None:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [arm for arm in arms if arm not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    runs = await interleaved_runs(
        SCRIPT,
        arms,
        args.repeats,
        ["--count", str(args.count), "--run-limit", str(args.run_limit)],
        timeout=args.run_limit + 60,
        report=lambda arm, result: (
            f"{arm:9s} {result['rate']:>10,.0f} msg/s "
            f"cpu {result['cpu_us_per_msg']:.2f} us/msg renders {result['renders']}"
        ),
    )
    med = {arm: median([r["rate"] for r in runs[arm]]) for arm in arms}
    rows = []
    for arm in arms:
        rates = sorted(r["rate"] for r in runs[arm])
        seconds = median([r["seconds"] for r in runs[arm]])
        rows.append([
            arm,
            f"{med[arm]:,.0f}",
            f"{rates[0]:,.0f}-{rates[-1]:,.0f}",
            f"{median([r['cpu_us_per_msg'] for r in runs[arm]]):.2f}",
            f"{median([r['delivered'] for r in runs[arm]]):,.0f}",
            f"{median([r['renders'] for r in runs[arm]]):.0f} in {seconds:.2f} s",
        ])  # fmt: skip
    info = machine()
    print(
        f"\nQuote ingest with and without the dashboard, {args.count:,} updates per run, "
        f"{args.repeats} runs per arm, medians. {info['nproc']} CPUs, {info['cpu']}, "
        f"Python {info['python']}, ib_async {info['ib_async']}, {info['date']}.\n"
    )
    print(
        table(
            ["arm", "msgs/s (median)", "range", "client CPU µs/msg", "quotes read", "redraws"],
            rows,
        )
    )
    if "plain" in med and "dashboard" in med:
        print(f"\n- dashboard / plain: {med['dashboard'] / med['plain']:.3f}")
    if args.steady_seconds > 0:
        await _steady_runs(args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300_001)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--run-limit", type=float, default=120.0)
    parser.add_argument("--time-limit", type=float, default=1800.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count % 3 == 0:
        parser.error("--count must not be a multiple of 3 (the last update must be a quote)")
    if args.child:
        hard_limit(args.run_limit + 30, f"benchmarks/dashboard_cost.py, arm {args.child}")
        if args.child in STEADY_ARMS:
            steady = asyncio.run(_steady(args.steady_seconds, args.child == "steady_dashboard"))
            print(json.dumps(steady))
            return
        try:
            result = asyncio.run(
                _run(
                    args.port, args.control, args.count, args.client_id, args.child, args.run_limit
                )
            )
        except MeasurementError as exc:
            sys.exit(f"arm {args.child}: the run is void: {exc}")
        print(json.dumps(result))
    else:
        hard_limit(args.time_limit, "benchmarks/dashboard_cost.py")
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
