"""Pacer burst benchmark: achieved message rate divided by TWS's limit.

Starts a simulated gateway that enforces TWS's limit (50 messages per second,
error 100 above it), connects an IBConnector with ``max_requests_per_second``
at the same limit and fires ``--count`` reqContractDetails requests at once
(``asyncio.gather`` of ib_async's own ``reqContractDetailsAsync``). It then
reads the gateway's receive timestamps and prints:

* the achieved rate over the burst (messages / seconds between the first and
  the last burst message as the gateway stamped them) and that rate divided
  by the limit;
* the largest number of messages the gateway saw in any 1.0 s window (must be
  <= the limit) and the number of error 100s (must be 0);
* how late the gateway stamped each message after the pacer wrote it (the
  jitter that ``pacing_window_margin`` must cover).

Run:  python benchmarks/pacer_burst.py            (about 21 s)
      python benchmarks/pacer_burst.py --count 300 --margin 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from bisect import bisect_right
from pathlib import Path

from ib_async import Stock

from ibconn import IBConnector
from ibconn.sim import SimConfig, SimulatedGateway

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import hard_limit


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The largest number of timestamps inside any half-open window ``(t - window, t]``."""
    ordered = sorted(times)
    best = 0
    for i, t in enumerate(ordered):
        first = bisect_right(ordered, t - window)
        best = max(best, i - first + 1)
    return best


async def run(count: int, limit: int, margin: float) -> int:
    config = SimConfig(rate_limit=limit)
    async with SimulatedGateway(port=0, config=config) as gw:
        connector = IBConnector(
            host="127.0.0.1",
            port=gw.port,
            client_id=1,
            max_requests_per_second=limit,
            pacing_window_margin=margin,
            heartbeat_interval=60,
            reconnect_attempts=1,
            connection_timeout=10,
        )
        async with connector:
            ib = connector.ib
            pacer = connector.pacer
            errors: list[int] = []
            ib.errorEvent += lambda req_id, code, msg, contract: errors.append(code)
            loop = asyncio.get_running_loop()
            sent_at: list[float] = []
            pacer.on_sent(lambda msg_id, req_id: sent_at.append(loop.time()))
            before = len(gw.received_times(1))
            contract = Stock("AAPL", "SMART", "USD")
            wall = time.perf_counter()
            results = await asyncio.gather(
                *(ib.reqContractDetailsAsync(contract) for _ in range(count))
            )
            elapsed = time.perf_counter() - wall
            stats = pacer.statistics()
            times = gw.received_times(1)
            burst = times[before:]
            lags = [g - s for g, s in zip(burst, sent_at[-len(burst) :], strict=False)]
            session = gw.session(1)
            violations = session.rate_violations if session is not None else -1
        failed = sum(1 for r in results if not r)
        span = burst[-1] - burst[0] if len(burst) > 1 else float("nan")
        rate = (len(burst) - 1) / span
        worst = max_in_window(times)
        worst_window = max_in_window(times, pacer.window)
        print(f"requests            {count} (answered {count - failed}, empty {failed})")
        print(f"limit               {limit} per 1.0 s; pacer window {pacer.window:g} s")
        print(f"burst at gateway    {len(burst)} messages in {span:.3f} s")
        print(f"achieved rate       {rate:.2f} msg/s")
        print(f"rate / limit        {rate / limit:.4f}")
        print(f"completion          {count / elapsed:.2f} requests/s wall clock ({elapsed:.2f} s)")
        print(f"max in any 1.0 s    {worst} (limit {limit})")
        print(f"max in any {pacer.window:g} s  {worst_window}")
        print(f"error 100 received  {errors.count(100)} (gateway rate violations {violations})")
        print(
            f"gateway stamp lag   median {statistics.median(lags) * 1e3:.3f} ms, "
            f"max {max(lags) * 1e3:.3f} ms"
        )
        print(f"throttled           {stats.throttled_seconds:.2f} s; sent {stats.sent_total}")
        ok = worst <= limit and errors.count(100) == 0 and violations == 0 and not failed
        print("OK" if ok else "FAILED")
        return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--margin", type=float, default=0.05, help="pacing_window_margin")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        help="seconds it may take (then it fails, exit 3)",
    )
    args = parser.parse_args()
    hard_limit(args.time_limit, "benchmarks/pacer_burst.py")
    return asyncio.run(run(args.count, args.limit, args.margin))


if __name__ == "__main__":
    sys.exit(main())
