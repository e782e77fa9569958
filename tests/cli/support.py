"""Helpers of the command line tests: the gateway processes, running a command, its errors."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from unittest import mock

from ibconn.__main__ import main
from ibconn.sim.server.control import send_command

ACCOUNT = "DU0000001"
"""The simulated gateway's account."""


@dataclass
class Sim:
    """A ``python -m ibconn sim`` process: its API port and control port."""

    port: int
    control_port: int
    process: subprocess.Popen[str]

    def control(self, command: str, **args: Any) -> Any:
        """Send one fault control (``ibconn sim COMMAND``) and return its result."""
        return asyncio.run(send_command(self.control_port, command, args, timeout=10))


@dataclass
class Sims:
    normal: Sim
    fast: Sim


@dataclass
class Result:
    """What one command did: exit status, stdout and stderr."""

    status: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as one JSON document."""
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        """stdout as JSON lines."""
        return [json.loads(line) for line in self.out.splitlines()]


class _Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def cli(*argv: object, answer: str | None = None) -> Result:
    """Run ``ibconn ARGV`` in this process; ``answer`` is typed at a terminal (else stdin is
    not a terminal)."""
    out, err = io.StringIO(), io.StringIO()
    stdin = _Stdin(answer or "", tty=answer is not None)
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        mock.patch.object(sys, "stdin", stdin),
    ):
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exc:  # argparse: --help, --version, bad flags
            status = exc.code if isinstance(exc.code, int) else 1
    return Result(status, out.getvalue(), err.getvalue())


def error_line(result: Result, command: str) -> str:
    """The one line a failed command printed on stderr, checked for its form."""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"ibconn {command}: error: "), lines[0]
    assert "Traceback" not in result.err
    return lines[0]
