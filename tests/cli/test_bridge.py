"""``ibconn bridge`` as a process: ready line, a command through it, clean stop, bad settings."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest
import yaml
from helpers import PLACE_ORDER, messages

from ibconn.bridge.natsd import NatsServer
from ibconn.bridge.protocol import CommandReply, CommandRequest
from ibconn.sim import SimulatedGateway

TIMEOUT = 30.0


def _config(path: Path, gw: SimulatedGateway, url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "ib_connector": {"host": "127.0.0.1", "port": gw.port, "client_id": 3},
                "bridge": {"url": url, "heartbeat_interval": 0.2, "subject_prefix": "cli-test"},
            }
        )
    )
    return path


def _start_bridge(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ibconn", "bridge", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), TIMEOUT)


async def _exit(process: subprocess.Popen[str]) -> int:
    return await asyncio.wait_for(asyncio.to_thread(process.wait), TIMEOUT)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
async def test_the_bridge_process_serves_commands_and_stops_cleanly_on_a_signal(
    gw: SimulatedGateway, tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    async with NatsServer(store_dir=tmp_path / "nats") as nats_server:
        await _serve_and_stop(gw, nats_server, tmp_path, sig, status)


async def _serve_and_stop(
    gw: SimulatedGateway, nats_server: NatsServer, tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    config = _config(tmp_path / "ibconn.yaml", gw, nats_server.url)
    process = _start_bridge(config)
    try:
        line = await _line(process)
        assert line.startswith("BRIDGE epoch="), line
        assert "prefix=cli-test" in line
        nc = await nats.connect(nats_server.url)
        try:
            request = CommandRequest(
                key="cli-1",
                args={"order_type": "market", "symbol": "AAPL", "action": "BUY", "quantity": 1},
            )
            msg = await nc.request("cli-test.cmd.place", request.encode(), timeout=TIMEOUT)
            assert CommandReply.decode(msg.data).ok
        finally:
            await nc.close()
        assert messages(gw, PLACE_ORDER, client_id=3) == 1
        process.send_signal(sig)
        assert await _exit(process) == status
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bad_bridge_settings_exit_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "ibconn.yaml"
    config.write_text(yaml.safe_dump({"ib_connector": {}, "bridge": {"retention": "forever"}}))
    result = subprocess.run(
        [sys.executable, "-m", "ibconn", "bridge", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 2
    assert "bridge.retention" in result.stderr and "7d" in result.stderr


def test_an_unreachable_nats_server_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ibconn", "bridge", "--nats-url", "nats://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot connect to NATS at nats://127.0.0.1:1" in result.stderr
