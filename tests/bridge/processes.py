"""The processes of the multi-process bridge tests: a gateway, the bridge, remote consumers.

Each runs as its own ``python`` child on 127.0.0.1 and can be stopped (SIGTERM),
killed (SIGKILL) and started again on the same port / settings / durable name:

* :class:`GatewayProcess`: ``python -m ibconn sim`` with a state file, so a restart of
  the process keeps its orders and executions (TWS keeps the day's executions too);
  its control port (:func:`ibconn.sim.server.control.send_command`) drives it.
* :class:`BridgeProcess`: ``python -m ibconn bridge --config bridge.yaml``.
* :class:`ConsumerProcess`: ``tests/bridge/fill_consumer.py``, one ``RemoteConnector``
  writing every fill it delivers to a JSON-lines file.

A plain module, not a conftest; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ibconn.sim.server.control import send_command

HERE = Path(__file__).parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Child:
    """One child process with its output in ``log``; start, stop, kill, wait."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.process: subprocess.Popen[str] | None = None
        self.starts = 0

    def _spawn(self, args: list[str], stdout: int | None = None) -> subprocess.Popen[str]:
        self.starts += 1
        with self.log.open("a") as log:
            log.write(f"--- start {self.starts}: {' '.join(args)}\n")
        err = self.log.open("a")
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout is None else stdout,
                stderr=err,
                text=True,
                env=_env(),
            )
        finally:
            err.close()
        return self.process

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def _read_line(self, timeout: float) -> str:
        """The next line of the child's stdout ('' at its end), within ``timeout``."""
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        return await asyncio.wait_for(asyncio.to_thread(stdout.readline), timeout)

    async def _expect(self, word: str, timeout: float) -> str:
        line = await self._read_line(timeout)
        if not line.startswith(word):
            raise AssertionError(f"{self.name} printed {line!r}, not {word}: see {self.log}")
        return line

    def _drain(self) -> None:
        """Copy the rest of the child's stdout to its log (a full pipe would block it)."""
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout

        def copy() -> None:
            with self.log.open("a") as log:
                for line in stdout:
                    log.write(line)
                    log.flush()

        threading.Thread(target=copy, name=f"drain-{self.name}", daemon=True).start()

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        if not await self._wait(timeout):
            await self.kill()

    async def kill(self) -> None:
        """SIGKILL: the process ends with nothing cleaned up."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        await self._wait(10.0)

    async def _wait(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True


class GatewayProcess(Child):
    """``python -m ibconn sim`` with ``--state-file``: restarts keep the broker's state."""

    def __init__(self, workdir: Path, *, seed: int, tick_rate: float = 20.0) -> None:
        super().__init__("gateway", workdir / "gateway.log")
        self.state_file = workdir / "gateway-state.json"
        self.seed = seed
        self.tick_rate = tick_rate
        self.port = 0
        self.control_port = 0

    async def start(self) -> None:
        """Start on ``port`` (a free one the first time); wait for LISTENING and CONTROL."""
        self._spawn(
            [sys.executable, "-m", "ibconn", "sim", "--port", str(self.port),
             "--control-port", "0", "--seed", str(self.seed), "--tick-rate",
             str(self.tick_rate), "--fill-delay", "0", "--state-file", str(self.state_file),
             "--log-level", "WARNING"]
        )  # fmt: skip
        listening = await self._expect("LISTENING", 60)
        control = await self._expect("CONTROL", 60)
        self.port = int(listening.split()[1].rsplit(":", 1)[1])
        self.control_port = int(control.split()[1].rsplit(":", 1)[1])
        self._drain()

    async def restart(self, down_for: float = 1.0) -> None:
        """Stop the process (state written), wait ``down_for``, start on the same port."""
        await self.stop()
        await asyncio.sleep(down_for)
        await self.start()

    async def control(self, command: str, **args: Any) -> Any:
        """One control command (see ``ibconn sim --help``)."""
        return await send_command(self.control_port, command, args, timeout=10)

    def executed(self) -> list[str]:
        """Every exec id in the state file (read it after :meth:`stop`)."""
        state = json.loads(self.state_file.read_text())
        return [e["exec_id"] for e in state["executions"]]


class BridgeProcess(Child):
    """``python -m ibconn bridge --config <yaml>``; ready once it printed ``BRIDGE``."""

    def __init__(self, workdir: Path, config: Path) -> None:
        super().__init__("bridge", workdir / "bridge.log")
        self.config = config

    async def start(self, timeout: float = 60.0) -> None:
        self._spawn([sys.executable, "-m", "ibconn", "bridge", "--config", str(self.config)])
        await self._expect("BRIDGE", timeout)
        self._drain()


class ConsumerProcess(Child):
    """``fill_consumer.py`` under durable name ``name``, writing ``<name>.jsonl``."""

    def __init__(self, workdir: Path, name: str, url: str, prefix: str = "ibconn") -> None:
        super().__init__(name, workdir / f"{name}.log")
        self.out = workdir / f"{name}.jsonl"
        self.url = url
        self.prefix = prefix
        self.slow = 0.0  # seconds of work per fill (a consumer that falls behind)

    async def start(self, timeout: float = 120.0) -> None:
        self._spawn(
            [sys.executable, str(HERE / "fill_consumer.py"), "--url", self.url,
             "--name", self.name, "--out", str(self.out), "--prefix", self.prefix,
             "--slow", str(self.slow)]
        )  # fmt: skip
        await self._expect("READY", timeout)
        self._drain()

    def seen(self) -> Counter[str]:
        """How many times this consumer (all its processes) delivered each exec id."""
        if not self.out.exists():
            return Counter()
        lines = self.out.read_text().splitlines()
        return Counter(json.loads(line)["exec_id"] for line in lines if line.strip())
