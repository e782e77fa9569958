"""Quote fan-out through the NATS bridge: delivered rate and added latency per consumer count.

Usage::

    python benchmarks/bridge_fanout.py [--consumers 1,10,50] [--rate 2000] [--seconds 5]
        [--warmup 1] [--workers 2] [--shared] [--time-limit 600]

Processes, all on 127.0.0.1: the gateway (``benchmarks/_harness.py serve``), a
nats-server with JetStream (:class:`ibconn.bridge.natsd.NatsServer`), ``python -m
ibconn bridge`` publishing AAPL's quotes, one **local** process (an ``IBConnector``
on the same gateway, client id 2, reading ``connector.quotes("AAPL")``) and
``--workers`` **remote** worker processes among which the N remote consumers are
spread as asyncio tasks, each its own ``RemoteConnector`` (its own NATS connection,
or with ``--shared`` one NATS client per worker passed to every remote as
``nats_client``) reading ``remote.quotes("AAPL")``.

The gateway sends sequence-numbered AAPL updates (a tickPrice whose size is the
sequence number) paced at ``--rate`` per second for ``--seconds``, to the bridge's and
the local connector's subscriptions alike, recording ``time.monotonic()`` before each
write. Every consumer records ``time.monotonic()`` when a quote arrives, its sequence
number being the largest size the quote carries. CLOCK_MONOTONIC is one clock for every
process on Linux, so the latency of each delivered quote is its arrival minus the write
that carried its sequence number; the first ``--warmup`` seconds are left out.

The bridge conflates quotes to the latest per subject, so a remote consumer may get
fewer quotes than were offered (never an older one after a newer one): "delivered/s"
counts what each consumer got. "added" is the remote percentile minus the local one
of the same run. Every run is fresh processes; a run that exceeds ``--time-limit``
fails loudly (exit status 3, stacks printed, children killed).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from _harness import _CHILDREN, Gateway, hard_limit, machine, table

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
SYMBOL = "AAPL"
PREFIX = "bench"


def _seq(quote: Any) -> int:
    sizes = [s for s in (quote.bid_size, quote.ask_size, quote.last_size) if s is not None]
    return int(max(sizes)) if sizes else 0


# --------------------------------------------------------------------------- child side


async def _child(args: argparse.Namespace) -> None:
    """One consumer process: ``--local`` (an IBConnector) or ``--names`` remote consumers."""
    count = args.count
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closes stdin: write, exit
    out = Path(args.out)
    recv: dict[str, array[float]] = {}
    tasks: list[asyncio.Task[None]] = []
    closers: list[Any] = []
    client: Any = None  # --shared: the NATS client of this worker's remotes

    async def pump(name: str, stream: Any) -> None:
        times = recv[name]
        async for quote in stream:
            now = time.monotonic()
            seq = _seq(quote)
            if 0 < seq <= count:
                times[seq] = now  # the last arrival: an older run's quote is overwritten

    if args.local:
        from ibconn import IBConnector  # noqa: PLC0415

        connector = IBConnector(
            "127.0.0.1",
            args.port,
            args.client_id,
            reconnect_attempts=1,
            market_data_type="REALTIME",
        )
        await connector.connect()
        closers.append(connector.disconnect)
        recv["local"] = array("d", bytes(8 * (count + 1)))
        tasks.append(loop.create_task(pump("local", connector.quotes(SYMBOL))))
    else:
        from ibconn.bridge.remote import RemoteConnector  # noqa: PLC0415

        if args.shared:
            import nats  # noqa: PLC0415

            client = await nats.connect(args.url)
        for name in args.names.split(","):
            remote = RemoteConnector(
                url=args.url, name=name, subject_prefix=PREFIX, nats_client=client
            )
            await remote.connect()
            closers.append(remote.close)
            recv[name] = array("d", bytes(8 * (count + 1)))
            tasks.append(loop.create_task(pump(name, remote.quotes(SYMBOL, capacity=100_000))))
    await asyncio.sleep(0.5)  # subscriptions in place
    print("READY", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    for name, times in recv.items():
        with (out / f"{name}.bin").open("wb") as f:
            times.tofile(f)
    for close in closers:
        with contextlib.suppress(Exception):
            await close()
    if client is not None:
        await client.close()
    print(json.dumps({"names": sorted(recv)}), flush=True)


# --------------------------------------------------------------------------- orchestrator


class _Proc:
    """A child process of the benchmark (killed by the time limit too)."""

    def __init__(self, proc: asyncio.subprocess.Process, what: str) -> None:
        self.proc = proc
        self.what = what
        _CHILDREN.add(proc.pid)

    @classmethod
    async def start(cls, what: str, *argv: str, ready: str, timeout: float = 60) -> _Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        child = cls(proc, what)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
        if not line.startswith(ready):
            raise RuntimeError(f"{what} did not start (printed {line!r})")
        return child

    async def finish(self, timeout: float = 60) -> str:
        """Close its stdin (the stop signal of a consumer); its remaining output."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = await asyncio.wait_for(self.proc.stdout.read(), timeout)
        await asyncio.wait_for(self.proc.wait(), timeout)
        _CHILDREN.discard(self.proc.pid)
        if self.proc.returncode != 0:
            raise RuntimeError(f"{self.what} failed with exit status {self.proc.returncode}")
        return out.decode()

    async def terminate(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        _CHILDREN.discard(self.proc.pid)


def _latencies(
    times: array[float], marks: tuple[list[int], list[float]], warm: int, started: float
) -> list[float]:
    mark_seq, mark_time = marks
    out = []
    for seq in range(warm + 1, len(times)):
        got = times[seq]
        if got >= started:  # 0.0 (never) or before the stream (an earlier run's quote) left out
            i = bisect.bisect_left(mark_seq, seq)
            out.append(got - mark_time[i])
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000.0


async def _run(args: argparse.Namespace, n: int, url: str, gw: Gateway, run: int) -> list[Any]:
    count = int(args.rate * args.seconds)
    warm = int(args.rate * args.warmup)
    workdir = Path(tempfile.mkdtemp(prefix="bridge-fanout-"))
    common = ["--count", str(count), "--out", str(workdir)]
    local = await _Proc.start(
        "local consumer", str(SCRIPT), "--child", "--local", "--port", str(gw.port),
        "--client-id", str(10 + run), *common, ready="READY",
    )  # fmt: skip
    workers = max(1, min(args.workers, n))
    names = [f"r{run}x{i}" for i in range(n)]
    groups = [names[w::workers] for w in range(workers)]
    remotes = await asyncio.gather(
        *(
            _Proc.start(
                f"remote worker {w}", str(SCRIPT), "--child", "--url", url,
                "--names", ",".join(group), *common, *(["--shared"] if args.shared else []),
                ready="READY", timeout=120,
            )
            for w, group in enumerate(groups)
        )
    )  # fmt: skip
    await gw.command(op="prepare", symbol=SYMBOL, kind="mkt", count=count)
    answer = await gw.command(op="stream", symbol=SYMBOL, kind="mkt", count=count, rate=args.rate)
    await asyncio.sleep(1.0)  # the last quotes on their way
    for proc in [local, *remotes]:
        await proc.finish()
    marks = (answer["mark_seq"], answer["mark_time"])
    span = answer["finished"] - answer["started"]

    def load(name: str) -> array[float]:
        times = array("d")
        with (workdir / f"{name}.bin").open("rb") as f:
            times.fromfile(f, count + 1)
        return times

    started = answer["started"]
    local_times = load("local")
    local_rate = sum(1 for t in local_times[1:] if t >= started) / span
    local_lat = _latencies(local_times, marks, warm, started)
    remote_lat: list[float] = []
    rates = []
    for name in names:
        times = load(name)
        rates.append(sum(1 for t in times[1:] if t >= started) / span)
        remote_lat += _latencies(times, marks, warm, started)
    lp50, lp99 = _pct(local_lat, 0.5), _pct(local_lat, 0.99)
    rp50, rp99 = _pct(remote_lat, 0.5), _pct(remote_lat, 0.99)
    return [
        n, workers, f"{count / span:,.0f}", f"{local_rate:,.0f}",
        f"{statistics.median(rates):,.0f}", f"{sum(rates):,.0f}",
        f"{lp50:.2f} / {lp99:.2f}", f"{rp50:.2f} / {rp99:.2f}",
        f"{rp50 - lp50:.2f} / {rp99 - lp99:.2f}",
    ]  # fmt: skip


async def _main(args: argparse.Namespace) -> None:
    from ibconn.bridge.natsd import NatsServer  # noqa: PLC0415

    workdir = Path(tempfile.mkdtemp(prefix="bridge-fanout-"))
    gw = await Gateway.start()
    nats = NatsServer(store_dir=workdir / "nats")
    bridge: _Proc | None = None
    rows = []
    try:
        await nats.start()
        if nats.pid is not None:
            _CHILDREN.add(nats.pid)
        config = workdir / "bridge.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "ib_connector": {
                        "host": "127.0.0.1", "port": gw.port, "client_id": 1,
                        "market_data_type": "REALTIME",
                    },
                    "bridge": {"url": nats.url, "subject_prefix": PREFIX, "market_data": [SYMBOL]},
                }
            )
        )  # fmt: skip
        bridge = await _Proc.start(
            "bridge", "-m", "ibconn", "bridge", "--config", str(config), ready="BRIDGE"
        )
        for run, n in enumerate(args.consumers):
            rows.append(await _run(args, n, nats.url, gw, run))
            print(f"  {n} consumers done", file=sys.stderr, flush=True)
    finally:
        if bridge is not None:
            await bridge.terminate()
        await nats.close()
        await gw.stop()
    info = machine()
    connections = "one NATS client per worker" if args.shared else "a NATS connection per remote"
    print(
        f"\nbridge fan-out, {args.rate:,.0f} quotes/s offered for {args.seconds:g} s "
        f"(warm-up {args.warmup:g} s), {connections}; {info['nproc']} cores, {info['cpu']}, "
        f"Python {info['python']}, {info['date']}\n"
    )
    print(
        table(
            [
                "remote consumers", "worker processes", "updates/s offered",
                "local quotes/s", "remote quotes/s per consumer (median)",
                "remote quotes/s, all consumers",
                "local p50 / p99 ms", "remote p50 / p99 ms", "added p50 / p99 ms",
            ],
            rows,
        )
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--consumers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50]
    )
    parser.add_argument("--rate", type=float, default=2000.0, help="quotes/s offered")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2, help="remote worker processes")
    parser.add_argument(
        "--shared", action="store_true", help="the remotes of a worker share one NATS client"
    )
    parser.add_argument("--time-limit", type=float, default=600.0)
    # child mode
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--local", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--client-id", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--names", default="", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        hard_limit(args.time_limit, "bridge_fanout consumer")
        asyncio.run(_child(args))
        return 0
    hard_limit(args.time_limit, "bridge_fanout")
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
