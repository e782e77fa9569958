"""What a process using ibconn writes to stderr, through a reconnect and an ordinary cancel.

Each test runs a real program in a subprocess (its own simulated gateway on
127.0.0.1): silent, ibconn writes nothing at all; with logging enabled each
record appears once, in ibconn's format, 202 at INFO.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

PROGRAM = """
import asyncio
import sys

from ibconn import IBConnector, enable_logging
from ibconn.connection.session import ConnectionState
from ibconn.sim import SimConfig, SimulatedGateway

MODE = sys.argv[1]


async def main() -> None:
    if MODE == "enabled":
        enable_logging("INFO")
    elif MODE == "json":
        enable_logging("INFO", json=True)
    config = SimConfig(tick_rate=0, fill_delay=0.0, seed=1)
    async with SimulatedGateway(port=0, config=config) as gw:
        gw.set_price("AAPL", 190.0)
        connector = IBConnector(
            port=gw.port,
            reconnect_attempts=0,
            reconnect_interval=0.05,
            reconnect_max_interval=0.1,
            connection_timeout=5,
        )
        async with connector:
            resting = await connector.place_limit_order("AAPL", 10, "BUY", 150.0)
            await connector.cancel_order(resting)  # TWS confirms with 202
            async with connector.connection_events() as watch:
                await gw.restart(downtime=0.3)  # refused attempts while it is down
                async for change in watch:
                    if change.state is ConnectionState.RECONNECTING:
                        break
            await connector.wait_connected(30)
            again = await connector.place_limit_order("AAPL", 10, "BUY", 150.0)
            await connector.cancel_order(again)
    print("done")


asyncio.run(main())
"""

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| (?P<level>[A-Z]+) *"
    r"\| (?P<category>[a-z_]+) *\| (?P<message>.*)$"
)


def run_program(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    result = subprocess.run(
        [sys.executable, str(program), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    return result


def test_silent_program_writes_nothing_through_a_reconnect_and_a_cancel(tmp_path: Path) -> None:
    result = run_program(tmp_path, "silent")
    assert result.stderr == ""


def test_demo_writes_nothing_to_stderr() -> None:
    # the demo restarts its gateway under the connector and cancels a partly filled order
    result = subprocess.run(
        [sys.executable, "-m", "ibconn", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "restarting the simulated gateway" in result.stdout
    assert "cancelled" in result.stdout
    assert result.stderr == ""


@pytest.fixture(scope="module")
def enabled_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return run_program(tmp_path_factory.mktemp("enabled"), "enabled").stderr.splitlines()


def test_enabled_logging_writes_every_line_in_ibconn_format(enabled_lines: list[str]) -> None:
    assert enabled_lines
    assert [line for line in enabled_lines if LINE.match(line) is None] == []


def test_enabled_logging_writes_each_record_once(enabled_lines: list[str]) -> None:
    repeated = [line for line, count in Counter(enabled_lines).items() if count > 1]
    assert repeated == []
    messages = [m["message"] for m in map(LINE.match, enabled_lines) if m is not None]

    def count(fragment: str) -> int:
        return sum(fragment in message for message in messages)

    assert count("state connected -> reconnecting") == 1
    assert count("state reconnecting -> connected") == 1
    assert count("TWS 202 (order_cancelled)") == 2  # one per cancel
    assert count("TWS 2104 (farm_ok)") == 2  # one per session


def test_enabled_logging_shows_202_at_info_and_no_ib_async_noise(
    enabled_lines: list[str],
) -> None:
    parsed = [m.groupdict() for m in map(LINE.match, enabled_lines) if m is not None]
    cancels = [p for p in parsed if "202" in p["message"]]
    assert {(p["level"], p["category"]) for p in cancels} == {("INFO", "errors")}
    assert [p for p in parsed if p["level"] == "ERROR"] == []
    noise = ("Peer closed", "API connection failed", "Make sure API port", "orderStatus:", "Trade(")
    assert [p for p in parsed if any(n in p["message"] for n in noise)] == []


def test_json_lines_parse(tmp_path: Path) -> None:
    lines = run_program(tmp_path, "json").stderr.splitlines()
    records = [json.loads(line) for line in lines]
    assert records
    for record in records:
        assert {"time", "level", "category", "message"} <= record.keys()
    cancels = [r for r in records if r.get("code") == 202]
    assert len(cancels) == 2  # one per cancel
    assert {(r["level"], r["category"], r["origin"]) for r in cancels} == {
        ("INFO", "errors", "ib_async.wrapper")
    }
    assert all(isinstance(r["req_id"], int) and r["req_id"] > 0 for r in cancels)
