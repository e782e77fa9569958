"""Measure the simulated gateway: tick messages/s to one client in max mode, and connect time.

Usage::

    python benchmarks/sim_tick_rate.py [--seconds 5] [--connects 20]

The gateway runs in its own process (``python -m ibconn sim --port 0
--tick-rate max``), exactly as a user starts it. Measurement 1: a raw-socket
client subscribes to AAPL quotes and counts the frames it receives for
``--seconds`` after a 1-second warm-up; it also checks that the sequence
numbers carried in the size field are contiguous (no message lost). The
client only walks length prefixes, so it reads far faster than the gateway
writes: the number is the gateway's send rate. Measurement 2: unmodified
``ib_async`` ``IB.connectAsync`` (full start-up sync) ``--connects`` times,
median and spread, against a gateway at the default tick rate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import sys
import time
from pathlib import Path

from ib_async import IB

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import hard_limit

AAPL = ["265598", "AAPL", "STK", "", "0.0", "", "", "SMART", "", "USD", "", ""]


def _frame(*fields: object) -> bytes:
    payload = b"".join(str(f).encode() + b"\0" for f in fields)
    return struct.pack(">I", len(payload)) + payload


async def _start_gateway(tick_rate: str) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ibconn",
        "sim",
        "--port",
        "0",
        "--tick-rate",
        tick_rate,
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
    if not line.startswith("LISTENING "):
        raise RuntimeError(f"gateway did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 10)


async def measure_tick_rate(seconds: float) -> dict[str, float]:
    proc, port = await _start_gateway("max")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        version = b"v157..178"
        writer.write(b"API\0" + struct.pack(">I", len(version)) + version)
        writer.write(_frame(71, 2, 1, ""))
        writer.write(_frame(1, 11, 1, *AAPL, 0, "", 0, 0, ""))
        buf = bytearray()
        count = 0
        last_seq = -1
        gaps = 0
        checked = 0
        warm_until = time.perf_counter() + 1.0
        start = end = 0.0
        measuring = False
        while True:
            chunk = await reader.read(1 << 20)
            if not chunk:
                raise RuntimeError("gateway closed the connection")
            buf += chunk
            pos, n, view = 0, len(buf), memoryview(buf)
            frames = 0
            while n - pos >= 4:
                size = int.from_bytes(view[pos : pos + 4], "big")
                if n - pos - 4 < size:
                    break
                # every 64th tickPrice of reqId 1: check the sequence number
                if frames & 63 == 0 and view[pos + 4] == 0x31 and view[pos + 5] == 0:
                    fields = bytes(view[pos + 4 : pos + 4 + size]).split(b"\0")
                    if fields[2] == b"1" and len(fields) == 8:
                        seq = int(fields[5])
                        if last_seq >= 0 and seq <= last_seq:
                            gaps += 1
                        last_seq = seq
                        checked += 1
                pos += 4 + size
                frames += 1
            view.release()
            del buf[:pos]
            now = time.perf_counter()
            if not measuring and now >= warm_until:
                measuring, start, count = True, now, 0
                first_seq = last_seq
                gaps = checked = 0  # the initial snapshot's sizes are not sequence numbers
            elif measuring:
                count += frames
                if now - start >= seconds:
                    end = now
                    break
        writer.close()
        span = last_seq - first_seq
        return {
            "messages_per_second": count / (end - start),
            "seconds": end - start,
            "messages": count,
            "sequence_span": span,
            "sequence_checks": checked,
            "out_of_order": gaps,
        }
    finally:
        await _stop(proc)


async def measure_connect(times: int) -> list[float]:
    proc, port = await _start_gateway("4")
    try:
        elapsed: list[float] = []
        for i in range(times):
            ib = IB()
            t0 = time.perf_counter()
            await ib.connectAsync("127.0.0.1", port, clientId=100 + i, timeout=5)
            elapsed.append(time.perf_counter() - t0)
            ib.disconnect()
            await asyncio.sleep(0.05)
        return elapsed
    finally:
        await _stop(proc)


async def _main(args: argparse.Namespace) -> None:
    rate = await measure_tick_rate(args.seconds)
    print(
        f"max mode, one client, AAPL quotes: {rate['messages_per_second']:,.0f} messages/s "
        f"({rate['messages']:,.0f} in {rate['seconds']:.2f} s; sequence advanced "
        f"{rate['sequence_span']:,.0f}, {rate['out_of_order']:.0f} out-of-order in "
        f"{rate['sequence_checks']:,.0f} checks)"
    )
    connects = await measure_connect(args.connects)
    ms = sorted(1000 * t for t in connects)
    print(
        f"ib_async connectAsync (full start-up sync), {len(ms)} runs: "
        f"median {statistics.median(ms):.2f} ms, min {ms[0]:.2f} ms, max {ms[-1]:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connects", type=int, default=20)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=600.0,
        help="seconds it may take (then it fails, exit 3)",
    )
    args = parser.parse_args()
    hard_limit(args.time_limit, "benchmarks/sim_tick_rate.py")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
