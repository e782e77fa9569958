"""The cost of Prometheus metrics on ingest: quotes through ``connector.quotes()``
with and without ``connector.serve_metrics()`` served and scraped.

Usage::

    python benchmarks/metrics_cost.py [--count 1000000] [--repeats 3]
                                      [--arms plain,served,metrics,metrics_fast]
                                      [--run-limit 180] [--time-limit 1800]
    python benchmarks/metrics_cost.py --scrape-cost 500

The gateway (``benchmarks/_harness.py serve``) runs in its own process and, per run,
streams exactly ``--count`` sequence-numbered quote updates of AAPL as fast as the
socket takes them (the same set-up as ``ingest.py``). Each run of each arm is a fresh
client process with one ``async for`` consumer of ``connector.quotes("AAPL")`` (a
conflating stream: the consumer gets the latest quote); a run ends when the quote
whose bid size is the last sequence number arrives. The arms are interleaved and
repeated; the medians are reported.

Arms:

* ``plain``: no metrics;
* ``served``: ``serve_metrics(0)`` (the lag monitor and the stream readers run), no scrape;
* ``metrics``: ``serve_metrics(0)``, and a scraper **process** that GETs ``/metrics``
  every 1 s (as Prometheus would) from before the stream starts until it ends;
* ``metrics_fast``: the same, scraped every 0.1 s (ten times a usual rate).

Reported per arm: updates per second, client CPU µs per update (``process_time``:
the connector, the metrics server and its collector; the scraper process not
included), the scrapes that overlapped the stream and the slowest of them (a
scrape waits while the loop ingests a read: its latency, not its cost).
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

from _harness import Gateway, MeasurementError, hard_limit, interleaved_runs, machine, median, table

SCRIPT = Path(__file__).resolve()
SYMBOL = "AAPL"
HEARTBEAT_TIMEOUT = 60.0  # as in ingest.py: a saturating run keeps the heartbeat's answer late
INTERVALS = {"plain": None, "served": 0.0, "metrics": 1.0, "metrics_fast": 0.1}
LABELS = {
    "plain": "`connector.quotes()`, no metrics",
    "served": "the same, metrics served, not scraped",
    "metrics": "the same, metrics served and scraped every 1 s",
    "metrics_fast": "the same, metrics served and scraped every 0.1 s",
}

SCRAPER = """
import sys, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
try:
    while True:
        start = time.monotonic()
        with urllib.request.urlopen(url, timeout=30) as answer:
            answer.read()
        end = time.monotonic()
        print(start, end, flush=True)
        time.sleep(max(0.0, interval - (end - start)))
except KeyboardInterrupt:
    pass
"""


async def _run(port: int, control: int, count: int, client_id: int, arm: str) -> Any:
    from ibconn import IBConnector  # noqa: PLC0415

    gw = Gateway(port, control)
    connector = IBConnector(
        "127.0.0.1",
        port,
        client_id,
        reconnect_attempts=1,
        market_data_type="REALTIME",
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
    )
    await connector.connect()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    scraper = None
    interval = INTERVALS[arm]
    if interval is not None:
        server = await connector.serve_metrics(0)
    if interval:
        scraper = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SCRAPER, server.url + "/metrics", str(interval),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
    seen = [0]

    async def consume() -> None:
        async with connector.quotes(SYMBOL) as quotes:
            async for quote in quotes:
                seen[0] += 1
                if (quote.bid_size or 0) >= count or (quote.ask_size or 0) >= count:
                    if not done.done():
                        done.set_result(time.monotonic())
                    return

    reader = loop.create_task(consume())
    await asyncio.sleep(0.5)  # the snapshot, and the scraper's first scrapes
    generation = connector.session.generation if connector.session else None
    await gw.command(op="prepare", symbol=SYMBOL, kind="mkt", count=count)
    gc.collect()
    cpu0 = time.process_time()
    answer = asyncio.ensure_future(gw.command(op="stream", symbol=SYMBOL, kind="mkt", count=count))
    try:
        async with asyncio.timeout(RUN_LIMIT[0]):
            last = await done
    except TimeoutError:
        raise MeasurementError(f"sequence number {count:,} did not arrive") from None
    cpu = time.process_time() - cpu0
    sent = await answer
    await reader
    session = connector.session
    if session is None or session.generation != generation:
        raise MeasurementError("a new session started during the measurement")
    during: list[float] = []  # durations of the scrapes that overlap the stream
    if scraper is not None:
        scraper.send_signal(2)
        out, _ = await scraper.communicate()
        for line in out.decode().splitlines():
            start, end = map(float, line.split())
            if end >= sent["started"] and start <= last:
                during.append(end - start)
    await connector.disconnect()
    seconds = last - sent["started"]
    return {
        "arm": arm,
        "rate": count / seconds,
        "cpu_us": 1e6 * cpu / count,
        "quotes_seen": seen[0],
        "scrapes": len(during),
        "slowest_scrape": max(during, default=0.0),
    }


RUN_LIMIT = [180.0]


async def _scrape_cost(scrapes: int) -> None:
    """Time one scrape (``status()`` and the text encoding) in process, no socket."""
    from ibconn import IBConnector  # noqa: PLC0415
    from ibconn.sim import SimConfig, SimulatedGateway  # noqa: PLC0415

    config = SimConfig(tick_rate=0, fill_delay=0.0, seed=1)
    async with SimulatedGateway(port=0, config=config) as gw:
        gw.set_price("AAPL", 190.0)
        gw.set_price("MSFT", 420.0)
        connector = IBConnector(
            "127.0.0.1", gw.port, 1, metrics={"symbols": ["AAPL"]}, journal=False
        )
        await connector.connect()
        await connector.serve_metrics(0)
        await connector.subscribe_market_data("AAPL")
        await connector.subscribe_market_data("MSFT")
        await connector.wait_for_order(
            await connector.place_market_order("AAPL", 10, "BUY"), timeout=10
        )
        for n in range(10):
            await connector.place_limit_order("MSFT", 1, "BUY", 300.0 + n)
        metrics = connector._metrics  # the registry, scraped without HTTP
        assert metrics is not None
        body = metrics.scrape()
        times = []
        for _ in range(scrapes):
            start = time.perf_counter()
            metrics.scrape()
            times.append(time.perf_counter() - start)
        await connector.disconnect()
    times.sort()
    print(
        f"one scrape: median {median(times) * 1e3:.2f} ms, p99 "
        f"{times[int(len(times) * 0.99) - 1] * 1e3:.2f} ms, {len(body):,} bytes "
        f"(2 lines, 1 position, 10 working orders, {scrapes} scrapes)"
    )


async def _main(args: argparse.Namespace) -> None:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [arm for arm in arms if arm not in LABELS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(LABELS)}")
    runs = await interleaved_runs(
        SCRIPT,
        arms,
        args.repeats,
        ["--count", str(args.count), "--run-limit", str(args.run_limit)],
        timeout=args.run_limit + 60,
        report=lambda arm, result: (
            f"{arm:12s} {result['rate']:>11,.0f} updates/s cpu {result['cpu_us']:.2f} us/update "
            f"scrapes {result['scrapes']} slowest {result['slowest_scrape'] * 1000:.1f} ms"
        ),
    )
    base = median([r["rate"] for r in runs.get("plain", [])]) if "plain" in runs else None
    rows = []
    for arm in arms:
        rate = median([r["rate"] for r in runs[arm]])
        rates = sorted(r["rate"] for r in runs[arm])
        rows.append(
            [
                LABELS[arm],
                f"{rate:,.0f}",
                f"{rates[0]:,.0f}-{rates[-1]:,.0f}",
                f"{median([r['cpu_us'] for r in runs[arm]]):.2f}",
                f"{rate / base:.3f}" if base else "",
                f"{median([r['scrapes'] for r in runs[arm]]):.0f}",
                f"{max(r['slowest_scrape'] for r in runs[arm]) * 1000:.1f}",
            ]
        )
    info = machine()
    print(
        f"\nQuotes with and without metrics, {args.count:,} updates per run, {args.repeats} runs "
        f"per arm, medians. {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"ib_async {info['ib_async']}, {info['date']}.\n"
    )
    print(
        table(
            [
                "arm",
                "updates/s",
                "range",
                "client CPU µs/update",
                "× no metrics",
                "scrapes in the stream",
                "slowest scrape ms",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arms", default=",".join(LABELS))
    parser.add_argument("--run-limit", type=float, default=180.0)
    parser.add_argument("--time-limit", type=float, default=1800.0)
    parser.add_argument(
        "--scrape-cost",
        type=int,
        default=0,
        metavar="N",
        help="instead: time N scrapes in process (status() and encoding, no socket)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--control", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count % 3 != 1:
        parser.error("--count must leave 1 when divided by 3 (its last update is a bid)")
    RUN_LIMIT[0] = args.run_limit
    if args.child:
        hard_limit(args.run_limit + 30, f"run of {args.child}")
        print(
            json.dumps(
                asyncio.run(_run(args.port, args.control, args.count, args.client_id, args.child))
            )
        )
        return
    hard_limit(args.time_limit, "metrics_cost.py")
    asyncio.run(_scrape_cost(args.scrape_cost) if args.scrape_cost else _main(args))


if __name__ == "__main__":
    main()
