"""The entry point: ``--version``, ``--help`` with defaults, one-line errors with exit 2 for
every bad flag (never a traceback), and Ctrl-C on a live command (exit 130)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from cli.support import Sims, cli, error_line
from ibconn import __version__

pytestmark = pytest.mark.timeout(60)

COMMANDS = [
    "check", "quotes", "bars", "history", "positions", "orders", "fills", "account", "pnl",
    "cancel", "cancel-all", "flatten", "kill-switch", "demo", "sim",
]  # fmt: skip

REQUIRED = {"quotes": ["AAPL"], "bars": ["AAPL"], "history": ["AAPL"], "cancel": ["1"],
            "kill-switch": ["status"]}  # fmt: skip
"""The positional arguments a command needs before its flags are looked at."""


def test_version() -> None:
    result = cli("--version")
    assert (result.status, result.out) == (0, f"ibconn {__version__}\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_flag_exits_2_with_one_line(command: str) -> None:
    result = cli(command, *REQUIRED.get(command, []), "--no-such-flag")
    assert result.status == 2
    assert "--no-such-flag" in error_line(result, command)


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["check", "--port", "70000"], "1..65535"),
        (["positions", "--port", "x"], "whole number"),
        (["account", "--client-id", "-1"], ">= 0"),
        (["quotes", "AAPL", "--count", "0"], "count"),
        (["quotes", "AAPL", "AAPL"], "twice"),
        (["bars", "AAPL", "--bar-size", "3 secs"], "3 secs"),
        (["history", "AAPL", "--what", "LOUD"], "LOUD"),
        (["check", "--market-data-type", "LOUD"], "REALTIME"),
        (["check", "--timeout", "-1"], "> 0"),
        (["pnl", "--timeout", "nan"], "finite"),
        (["kill-switch", "maybe"], "maybe"),
        (["quotes"], "SYMBOL"),
        (["sim", "--port", "70000"], "0..65535"),
        (["sim", "--log-level", "LOUD"], "LOUD"),
        (["demo", "--port", "99999999999999999999"], "1..65535"),
        (["demo", "--log-level", "LOUD"], "LOUD"),
        ([], "COMMAND"),
    ],
)
def test_a_bad_value_exits_2_with_one_line(argv: list[str], mentions: str) -> None:
    result = cli(*argv)
    assert result.status == 2
    command = f" {argv[0]}" if argv else ""
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ibconn{command}: error: "), result.err
    assert mentions in lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_defaults_and_no_markup(command: str) -> None:
    result = cli(command, "--help")
    assert result.status == 0
    assert "(default:" in result.out
    for markup in ("``", ":class:", ":meth:", ":func:"):
        assert markup not in result.out, (command, markup)


def test_connection_options_show_where_settings_come_from() -> None:
    text = " ".join(cli("positions", "--help").out.split())
    for option in ("--host", "--port", "--client-id", "--config", "--market-data-type",
                   "--timeout"):  # fmt: skip
        assert option in text
    assert "IBCONN_<KEY>" in text and "(default: settings, 7497)" in text


def test_the_real_entry_point_never_shows_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ibconn", "check", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "ibconn check: error: argument --port: port must be 1..65535, not 70000\n"
    )


def test_ctrl_c_ends_a_live_command_with_130(sims: Sims) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "ibconn", "quotes", "AAPL", "--port", str(sims.normal.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("time")
        assert " AAPL " in process.stdout.readline()  # live: a quote arrived
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert process.returncode == 130
    assert err == "ibconn quotes: interrupted\n"
