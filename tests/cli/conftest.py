"""The ``ibconn`` command line against simulated gateways running in other processes.

Two gateways start once for the package (``python -m ibconn sim --port 0``):
``sims.normal`` with a wall clock, ``sims.fast`` with a clock 20 times faster
(live bars every quarter second, and a clock skew ``check`` must report).
Commands run in this process through ``ibconn.__main__.main`` (the start-up
of a Python process costs more than most commands), each over a real socket;
``tests/cli/test_entry.py`` runs the real entry point in subprocesses too.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cli.support import Sim, Sims


def _start(*flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ibconn", "sim", "--port", "0", "--control-port", "0",
         "--log-level", "ERROR", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip


def _ports(process: subprocess.Popen[str]) -> tuple[int, int]:
    assert process.stdout is not None
    listening = process.stdout.readline().split()  # LISTENING 127.0.0.1:N (or EOF: it died)
    control = process.stdout.readline().split()  # CONTROL 127.0.0.1:N
    assert listening[0] == "LISTENING" and control[0] == "CONTROL", (listening, control)
    return int(listening[1].rsplit(":", 1)[1]), int(control[1].rsplit(":", 1)[1])


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@pytest.fixture(scope="package")
def sims() -> Iterator[Sims]:
    """The two gateway processes of the package, started together."""
    normal = _start("--tick-rate", "10", "--fill-delay", "0")
    fast = _start("--tick-rate", "10", "--clock-speed", "20")
    try:
        yield Sims(Sim(*_ports(normal), normal), Sim(*_ports(fast), fast))
    finally:
        _stop(normal)
        _stop(fast)
