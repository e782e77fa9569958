"""Reconnect: from the gateway listening again to the first quote on the same iterator.

One ``IBConnector`` with default settings (only the port and client id set)
reads ``connector.quotes("AAPL")`` through one ``async for`` for the whole run.
The simulated gateway runs in its own process (``python benchmarks/reconnect.py
serve PORT``). Each repeat stops it (the process exits, so the kernel closes
its sockets: ibconn sees the loss at once), waits ``--outage`` seconds and
starts a new gateway process on the same port, which prints the
``time.monotonic()`` at which it listens (CLOCK_MONOTONIC is one clock for
every process on Linux). Measured per repeat:

* **back**: from the new gateway listening to the first quote the iterator yields;
* **detected**: from the old gateway's exit to the connector's ``RECONNECTING``;
* for reference, raw ib_async's ``connectAsync`` alone against the same gateway
  (socket, handshake and its start-up sync: the floor of any reconnect through it).

``--silent N`` adds N silent drops: the gateway process is frozen (SIGSTOP), so
its sockets stay open and nothing arrives; only the heartbeat
(``heartbeat_interval`` + ``heartbeat_timeout``) can notice. It measures the time
from the freeze to ``RECONNECTING``, then replaces the frozen gateway.

    python benchmarks/reconnect.py --repeats 7 --outage 2 [--silent 1]

Every wait has a limit: past ``--time-limit`` (or a step's own limit) the
benchmark fails loudly (exit status 2) instead of hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import statistics
import sys
import time
from pathlib import Path

from ib_async import IB

from ibconn import ConnectionEvent, ConnectionState, IBConnector, Subscription

SCRIPT = Path(__file__).resolve()
STEP_LIMIT = 60.0  # seconds any one step may take


class Failed(Exception):
    """A step took longer than its limit."""


async def serve(port: int) -> None:
    """The gateway process: prints READY once imported, listens on ``port`` when a line
    arrives on stdin (so that its start-up is not part of the outage), until stdin closes."""
    from ibconn.sim import SimConfig, SimulatedGateway  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(os.read(0, 4096)))
    print("READY", flush=True)
    if not await lines.get():
        return
    async with SimulatedGateway(port=port, config=SimConfig(tick_rate=20, seed=1)) as gw:
        gw.set_price("AAPL", 190.0)
        print(f"LISTENING {gw.port} {time.monotonic()!r}", flush=True)
        while await lines.get():  # until stdin closes
            pass


class GatewayProcess:
    """One gateway process; ``listening`` is the monotonic time it listened at."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, listening: float) -> None:
        self.proc = proc
        self.port = port
        self.listening = listening

    @classmethod
    async def prepare(cls, port: int) -> asyncio.subprocess.Process:
        """A gateway process that has imported everything and waits to listen."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "serve",
            str(port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await cls._line(proc)
        if line != ["READY"]:
            raise Failed(f"the gateway process did not get ready: {line!r}")
        return proc

    @classmethod
    async def listen(cls, proc: asyncio.subprocess.Process) -> GatewayProcess:
        """Tell a prepared gateway process to listen; returns once it does."""
        assert proc.stdin is not None
        proc.stdin.write(b"listen\n")
        line = await cls._line(proc)
        if len(line) != 3 or line[0] != "LISTENING":
            proc.kill()
            raise Failed(f"the gateway did not start: {line!r}")
        return cls(proc, int(line[1]), float(line[2]))

    @classmethod
    async def start(cls, port: int) -> GatewayProcess:
        return await cls.listen(await cls.prepare(port))

    @staticmethod
    async def _line(proc: asyncio.subprocess.Process) -> list[str]:
        assert proc.stdout is not None
        try:
            return (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        except TimeoutError:
            proc.kill()
            raise Failed("the gateway process did not answer within 30 s") from None

    async def stop(self) -> float:
        """Stop it; returns the monotonic time its process had exited."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return time.monotonic()

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


class QuoteWatch:
    """Reads the one iterator; remembers when each quote arrived."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.changed = asyncio.Event()

    async def read(self, connector: IBConnector) -> None:
        async for _quote in connector.quotes("AAPL"):
            self.arrivals.append(time.monotonic())
            self.changed.set()

    async def first_after(self, since: float, limit: float) -> float:
        async with asyncio.timeout(limit):
            while True:
                for t in reversed(self.arrivals):
                    if t < since:
                        break
                later = [t for t in self.arrivals[-50:] if t >= since]
                if later:
                    return later[0]
                self.changed.clear()
                await self.changed.wait()


async def wait_state(
    events: Subscription[ConnectionEvent], state: ConnectionState, limit: float
) -> float:
    """Read connection events until one says ``state``; returns when it was seen."""
    async with asyncio.timeout(limit):
        async for event in events:
            if event.state is state:
                return time.monotonic()
    raise Failed("the connection events ended")


async def run(repeats: int, outage: float, silent: int) -> None:
    gw = await GatewayProcess.start(0)
    port = gw.port
    connector = IBConnector(port=port, client_id=1)  # default settings otherwise
    s = connector.settings
    print(
        f"default settings: reconnect_fast_window {s.reconnect_fast_window} s, "
        f"reconnect_fast_interval {s.reconnect_fast_interval} s, reconnect_interval "
        f"{s.reconnect_interval} s, heartbeat_interval {s.heartbeat_interval} s, "
        f"heartbeat_timeout {s.heartbeat_timeout} s"
    )
    back: list[float] = []
    detected: list[float] = []
    silent_detected: list[float] = []
    events = connector.connection_events()
    await connector.connect()
    watch = QuoteWatch()
    reader = asyncio.create_task(watch.read(connector))
    try:
        await watch.first_after(0.0, STEP_LIMIT)
        for n in range(repeats):
            spare = await GatewayProcess.prepare(port)  # its start-up is not the outage
            exited = await gw.stop()
            detected.append(await wait_state(events, ConnectionState.RECONNECTING, 10) - exited)
            await asyncio.sleep(max(0.0, exited + outage - time.monotonic()))
            gw = await GatewayProcess.listen(spare)
            first = await watch.first_after(gw.listening, STEP_LIMIT)
            back.append(first - gw.listening)
            print(
                f"repeat {n + 1}: loss seen after {detected[-1] * 1000:.1f} ms; first quote "
                f"{back[-1] * 1000:.1f} ms after the gateway listened again "
                f"({first - exited:.3f} s after it stopped)",
                flush=True,
            )
            await wait_state(events, ConnectionState.CONNECTED, 10)
        for n in range(silent):
            assert gw.proc.pid is not None
            os.kill(gw.proc.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            seen = await wait_state(events, ConnectionState.RECONNECTING, STEP_LIMIT)
            silent_detected.append(seen - frozen)
            print(f"silent drop {n + 1}: loss seen after {silent_detected[-1]:.2f} s", flush=True)
            spare = await GatewayProcess.prepare(port)
            await gw.kill()
            gw = await GatewayProcess.listen(spare)
            await watch.first_after(gw.listening, STEP_LIMIT)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await connector.disconnect()
        # the floor: raw ib_async's own connect (socket, handshake, start-up sync) to this gateway
        floor = []
        for _ in range(repeats):
            ib = IB()
            started = time.monotonic()
            await asyncio.wait_for(ib.connectAsync("127.0.0.1", port, clientId=9), STEP_LIMIT)
            floor.append(time.monotonic() - started)
            ib.disconnect()
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await connector.disconnect()
        await gw.kill()
    print(f"\n{repeats} outages of {outage:g} s, default settings, one quotes() iterator (ms):")
    print("| | p50 | max | all |")
    print("|---|---|---|---|")
    print(
        f"| gateway listening again -> first quote | {statistics.median(back) * 1000:.1f} | "
        f"{max(back) * 1000:.1f} | {', '.join(f'{x * 1000:.1f}' for x in back)} |"
    )
    print(
        f"| gateway process exited -> RECONNECTING | {statistics.median(detected) * 1000:.1f} | "
        f"{max(detected) * 1000:.1f} | {', '.join(f'{x * 1000:.1f}' for x in detected)} |"
    )
    print(
        f"| reference: raw ib_async `connectAsync` alone | {statistics.median(floor) * 1000:.1f} "
        f"| {max(floor) * 1000:.1f} | {', '.join(f'{x * 1000:.1f}' for x in floor)} |"
    )
    if silent_detected:
        print(
            f"| silent drop (SIGSTOP) -> RECONNECTING | "
            f"{statistics.median(silent_detected) * 1000:.0f} | "
            f"{max(silent_detected) * 1000:.0f} | "
            f"{', '.join(f'{x * 1000:.0f}' for x in silent_detected)} |"
        )


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    try:
        async with asyncio.timeout(args.time_limit):
            await run(args.repeats, args.outage, args.silent)
    except (TimeoutError, Failed) as exc:
        print(
            f"FAILED: reconnect.py: {exc or 'a step did not finish in time'} "
            f"(--time-limit {args.time_limit} s)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(int(sys.argv[2])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="outages (at least 5 for p50/max)")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds the gateway is down")
    parser.add_argument("--silent", type=int, default=0, help="silent drops to time (SIGSTOP)")
    parser.add_argument(
        "--time-limit", type=float, default=300.0, help="seconds before the run fails loudly"
    )
    asyncio.run(main(parser.parse_args()))
