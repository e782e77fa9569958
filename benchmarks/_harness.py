"""Shared parts of the ingest, latency and memory benchmarks.

**The gateway process.** ``python benchmarks/_harness.py serve`` runs a
:class:`~ibconn.sim.SimulatedGateway` (automatic price updates off) in its own
process and prints ``LISTENING host:port CONTROL port`` as its first line.
Clients connect to the API port as usual; a benchmark then asks the
**control port** (one JSON object per line) to stream a fixed number of
sequence-numbered updates of one instrument to every subscriber:

* ``{"op": "stream", "symbol": "AAPL", "kind": "mkt" | "tbt", "count": N}``:
  updates 1..N as fast as the subscribers' sockets take them (written in
  ~64 KiB chunks, each followed by ``drain()``, like ``gw.blast``);
* the same with ``"rate": R``: paced at R updates per second; the answer
  holds ``marks``, the ``time.monotonic()`` of every write and the last
  sequence number it carried (CLOCK_MONOTONIC is the same clock in every
  process on Linux, so a client can compute send-to-receive latency);
* ``{"op": "prepare", ...}`` with the arguments of a later ``stream``: encodes its
  updates now, so that the stream itself starts at once (no pause in the data
  during the measurement, so no line goes stale in the middle of it);
* ``{"op": "set_price", "symbol": "AAPL", "price": P}``: move the instrument's price
  (``gw.set_price``; the order latency benchmark's marketable orders);
* ``{"op": "blast", "symbol": "AAPL", "count": N, "batch": B}``: the sim's own
  :meth:`~ibconn.sim.SimulatedGateway.blast`, for comparison.

The updates are exactly the messages of the sim's fast mode
(``docs/simulator.md``): a tickPrice per update whose size is the sequence
number (bid, ask, last by ``seq % 3``), or a tick-by-tick AllLast message
with size = seq. They are encoded by the subscription objects of the sim
itself over a copy of the instrument's random walk, **before** the clock
starts: ``gw.blast`` computes the walk and encodes while it sends and tops
out near 135 000 updates/s on this VM, below what one ib_async client
ingests, so it would measure the gateway instead of the client.

The gateway must keep answering while it prepares a stream: a client's heartbeat
(``reqCurrentTime`` every ``heartbeat_interval``, unanswered after
``heartbeat_timeout``) must never go unanswered because the gateway's loop is busy.
Encoding a million frames takes seconds, so :meth:`_Streamer.frames` encodes in
slices of :data:`ENCODE_SLICE` frames and returns to the loop after each one.

**Time limits.** Every benchmark script calls :func:`hard_limit` first: when its
limit passes it prints why (and every thread's stack), kills the processes it
started and exits with :data:`TIME_LIMIT_EXIT`, even if its loop is blocked. A
client run that waits for a sequence number that never comes fails the same way
instead of hanging.

**Client side.** :class:`Gateway` starts that process and talks to the
control port; :func:`machine` describes the machine; :func:`table` prints a
markdown table.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import faulthandler
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).resolve()
ROOT = HARNESS.parent.parent
CHUNK_BYTES = 1 << 16
ENCODE_SLICE = 5000
"""Frames encoded between two returns to the gateway's loop (about 50-80 ms of work)."""
TIME_LIMIT_EXIT = 3
"""Exit status of a benchmark process stopped by its :func:`hard_limit`."""
_CHILDREN: set[int] = set()  # processes started by this one, killed when its limit passes


def hard_limit(seconds: float, what: str) -> threading.Timer:
    """Stop this process ``seconds`` from now, loudly: a message naming ``what``, every
    thread's stack, the processes it started killed, exit status :data:`TIME_LIMIT_EXIT`.

    A timer thread, so it fires even while the event loop is blocked.
    """

    def expire() -> None:
        sys.stderr.write(
            f"\n{what}: time limit of {seconds:g} s exceeded: the benchmark FAILED "
            "(it would have hung); stacks follow\n"
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        for pid in list(_CHILDREN):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        sys.stderr.flush()
        os._exit(TIME_LIMIT_EXIT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


class MeasurementError(RuntimeError):
    """A run whose measurement cannot be trusted (a reconnect, a missing sequence number)."""


def fail_on_disconnect(ib: Any, done: asyncio.Future[Any], what: str) -> None:
    """Fail ``done`` with :class:`MeasurementError` if ``ib`` loses its connection.

    A reconnect in the middle of a measurement means the updates written on the
    old socket are lost: the run is void, never a number.
    """

    def lost() -> None:
        if not done.done():
            done.set_exception(
                MeasurementError(f"{what}: the connection was lost during the measurement")
            )

    ib.disconnectedEvent += lost


# --------------------------------------------------------------------------- gateway side


class _Streamer:
    """Pre-encodes and sends sequence-numbered updates to a gateway's subscribers."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.cache: dict[tuple[Any, ...], list[bytes]] = {}

    def subscribers(self, symbol: str, kind: str) -> list[Any]:
        inst = self.gw.market.instrument(symbol)
        subs = []
        for session in self.gw.sessions:
            for sub_kind, req_id, _name in self.gw.market_data.subscriptions(session):
                sub = self.gw.market_data.get(session, sub_kind, req_id)
                if sub_kind == kind and sub is not None and sub.inst.con_id == inst.con_id:
                    if kind == "tbt" and sub.tbt_type not in (1, 2):
                        continue
                    subs.append(sub)
        return subs

    async def frames(self, sub: Any, count: int) -> list[bytes]:
        key = (sub.kind, sub.req_id, getattr(sub, "tbt_type", 0), sub.inst.con_id, count)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        market = self.gw.market
        walk = copy.deepcopy(market.walk(sub.inst.con_id))
        quote = market.quote(sub.inst.con_id).copy()
        now = self.gw.clock.time()
        out: list[bytes] = []
        for seq in range(1, count + 1):
            if not seq % ENCODE_SLICE:
                await asyncio.sleep(0)  # answer heartbeats and control requests meanwhile
            walk.step(quote, now)
            quote.seq = seq
            quote.fast = True
            if sub.kind == "mkt":
                out.append(sub._fast_frame(quote))
            else:
                frame = sub.frame(quote, size_override=seq)
                assert frame is not None
                out.append(frame)
        if len(self.cache) >= 6:  # large (about 60 MB per million): keep a few
            self.cache.clear()
        self.cache[key] = out
        return out

    async def wait_for(self, symbol: str, kind: str, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            subs = self.subscribers(symbol, kind)
            if subs or time.monotonic() > deadline:
                return subs
            await asyncio.sleep(0.01)

    async def prepare(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Encode (and cache) the frames of a later ``stream`` with the same arguments."""
        count = int(cmd["count"])
        subs = await self.wait_for(cmd["symbol"], cmd["kind"])
        if not subs:
            return {"error": f"no {cmd['kind']} subscriber of {cmd['symbol']}"}
        for sub in subs:
            await self.frames(sub, count)
        return {"subscribers": len(subs)}

    async def stream(self, cmd: dict[str, Any]) -> dict[str, Any]:
        count = int(cmd["count"])
        subs = await self.wait_for(cmd["symbol"], cmd["kind"])
        if not subs:
            return {"error": f"no {cmd['kind']} subscriber of {cmd['symbol']}"}
        streams = [(sub.session, await self.frames(sub, count)) for sub in subs]
        rate = cmd.get("rate")
        if rate:
            return await self._paced(streams, count, float(rate), subs)
        per_chunk = max(1, CHUNK_BYTES // max(1, len(streams[0][1][0])))
        # Join the chunks before the clock starts, too.
        chunks: list[tuple[Any, list[bytes]]] = []
        for session, frames in streams:
            parts = []
            for i in range(0, count, per_chunk):
                parts.append(b"".join(frames[i : i + per_chunk]))
                if not len(parts) % 64:
                    await asyncio.sleep(0)
            chunks.append((session, parts))
        started = time.monotonic()
        for k in range(len(chunks[0][1])):
            for session, parts in chunks:
                session.send_raw(parts[k], min(per_chunk, count - k * per_chunk))
            for session, _ in chunks:
                await session.drain()
        finished = time.monotonic()
        return {"started": started, "finished": finished, "subscribers": len(subs)}

    async def _paced(
        self, streams: list[tuple[Any, list[bytes]]], count: int, rate: float, subs: list[Any]
    ) -> dict[str, Any]:
        mark_seq: list[int] = []
        mark_time: list[float] = []
        sent = 0
        started = time.monotonic()
        while sent < count:
            now = time.monotonic()
            due = min(count, int((now - started) * rate) + 1)
            if due > sent:
                mark_seq.append(due)
                mark_time.append(time.monotonic())
                for session, frames in streams:
                    session.send_raw(b"".join(frames[sent:due]), due - sent)
                sent = due
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
        return {
            "started": started,
            "finished": time.monotonic(),
            "subscribers": len(subs),
            "mark_seq": mark_seq,
            "mark_time": mark_time,
        }


async def _serve(orders: bool = False) -> None:
    from ibconn.sim import SimConfig, SimulatedGateway  # noqa: PLC0415

    # ``serve orders``: fills at once and no message log, as the order latency benchmark's
    # in-loop gateway (benchmarks/order_latency.py --gateway process)
    config = (
        SimConfig(tick_rate=0, fill_delay=0.0, seed=1, message_log_size=0)
        if orders
        else SimConfig(tick_rate=0)
    )
    async with SimulatedGateway(port=0, config=config) as gw:
        streamer = _Streamer(gw)

        async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                cmd = json.loads(line)
                try:
                    if cmd["op"] == "stream":
                        answer = await streamer.stream(cmd)
                    elif cmd["op"] == "prepare":
                        answer = await streamer.prepare(cmd)
                    elif cmd["op"] == "blast":
                        result = await gw.blast(cmd["symbol"], int(cmd["count"]), batch=256)
                        answer = {"started": result.started, "finished": result.finished}
                    elif cmd["op"] == "set_price":
                        gw.set_price(cmd["symbol"], float(cmd["price"]))
                        answer = {"ok": True}
                    elif cmd["op"] == "wait":
                        subs = await streamer.wait_for(cmd["symbol"], cmd["kind"])
                        answer = {"subscribers": len(subs)}
                    else:
                        answer = {"error": f"unknown op {cmd['op']!r}"}
                except Exception as exc:
                    answer = {"error": repr(exc)}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(control, "127.0.0.1", 0)
        control_port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {gw.host}:{gw.port} CONTROL {control_port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closes stdin to stop us
        await stop.wait()
        server.close()


# --------------------------------------------------------------------------- client side


class Gateway:
    """The gateway process (started by the orchestrator) and its control connection."""

    def __init__(self, port: int, control_port: int, proc: Any = None) -> None:
        self.port = port
        self.control_port = control_port
        self.proc = proc

    @classmethod
    async def start(cls, *options: str) -> Gateway:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HARNESS),
            "serve",
            *options,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        _CHILDREN.add(proc.pid)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        if not line or line[0] != "LISTENING":
            raise RuntimeError(f"gateway did not start: {line!r}")
        return cls(int(line[1].rsplit(":", 1)[1]), int(line[3]), proc)

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        _CHILDREN.discard(proc.pid)

    async def command(self, **cmd: Any) -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.control_port, limit=1 << 26
        )
        try:
            writer.write(json.dumps(cmd).encode() + b"\n")
            await writer.drain()
            answer: dict[str, Any] = json.loads(await reader.readline())
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if "error" in answer:
            raise RuntimeError(f"gateway: {answer['error']}")
        return answer


async def run_child(script: Path, args: Sequence[str], timeout: float = 300) -> dict[str, Any]:
    """Run ``python script args...`` in a fresh process; its last stdout line is JSON.

    Raises ``RuntimeError`` when the child fails or is still running after
    ``timeout`` seconds (then it is killed first).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    _CHILDREN.add(proc.pid)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(
            f"{script.name} {' '.join(args)} still running after {timeout:g} s: killed"
        ) from None
    finally:
        _CHILDREN.discard(proc.pid)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def interleaved_runs(
    script: Path,
    arms: Sequence[str],
    repeats: int,
    child_args: Sequence[str],
    *,
    timeout: float,
    report: Callable[[str, dict[str, Any]], str],
    first_client_id: int = 300,
) -> dict[str, list[dict[str, Any]]]:
    """Run every arm ``repeats`` times against one benchmark gateway, arms interleaved run
    by run, each run a fresh ``script --child ARM`` process with its own client id.

    ``child_args`` are passed to every run (after ``--port``, ``--control`` and
    ``--client-id``); ``report(arm, result)`` is the progress line printed to stderr.
    Returns the results per arm, in run order.
    """
    gw = await Gateway.start()
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    client_id = first_client_id
    try:
        for repeat in range(repeats):
            for arm in arms:
                client_id += 1
                child = [
                    "--child", arm, "--port", str(gw.port), "--control", str(gw.control_port),
                    "--client-id", str(client_id), *child_args,
                ]  # fmt: skip
                result = await run_child(script, child, timeout=timeout)
                runs[arm].append(result)
                line = f"run {repeat + 1}/{repeats} {report(arm, result)}"
                print(line, file=sys.stderr, flush=True)
    finally:
        await gw.stop()
    return runs


def machine() -> dict[str, str]:
    """nproc, CPU model, Python and ib_async versions, date (UTC)."""
    import ib_async  # noqa: PLC0415

    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "ib_async": ib_async.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] in (["serve"], ["serve", "orders"]):
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(orders=sys.argv[2:] == ["orders"]))
    else:
        sys.exit("usage: python benchmarks/_harness.py serve [orders]")
