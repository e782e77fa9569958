"""``python -m ibconn sim`` as a user runs it, and the pytest fixture."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable

import pytest
from ib_async import IB

from ibconn.__main__ import main
from ibconn.sim import SimConfig, SimulatedGateway

from ..conftest import wait_until


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_cli_listens_logs_clients_and_stops_cleanly(
    sig: signal.Signals, ibs: Callable[[], IB]
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ibconn",
        "sim",
        "--port",
        "0",
        "--seed",
        "3",
        "--tick-rate",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("LISTENING 127.0.0.1:")
        port = int(line.strip().rsplit(":", 1)[1])
        ib = ibs()
        await ib.connectAsync("127.0.0.1", port, clientId=4, timeout=5)
        assert ib.isConnected()
        ib.disconnect()
        await asyncio.sleep(0.1)
        proc.send_signal(sig)
        code = await asyncio.wait_for(proc.wait(), 10)
        err = (await proc.stderr.read()).decode()
        assert code == 0, err
        assert "client 4 connected" in err and "client 4 from" in err and "left" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_cli_rejects_bad_settings(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "--config", "/nonexistent/sim.yaml"]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sim", "--tick-rate", "fast"])


async def test_plugin_fixture(ibconn_gateway: SimulatedGateway, ibs: Callable[[], IB]) -> None:
    assert ibconn_gateway.running and ibconn_gateway.port > 0
    ib = ibs()
    await ib.connectAsync("127.0.0.1", ibconn_gateway.port, clientId=1, timeout=5)
    await wait_until(lambda: 1 in ibconn_gateway.clients)


@pytest.mark.parametrize("ibconn_gateway", [{"seed": 99, "rate_limit": 7}], indirect=True)
async def test_plugin_fixture_indirect_config(ibconn_gateway: SimulatedGateway) -> None:
    assert ibconn_gateway.config.seed == 99 and ibconn_gateway.config.rate_limit == 7


@pytest.mark.parametrize("ibconn_gateway", [SimConfig(accounts=["DU7", "DU8"])], indirect=True)
async def test_plugin_fixture_indirect_simconfig(ibconn_gateway: SimulatedGateway) -> None:
    assert ibconn_gateway.config.accounts == ["DU7", "DU8"]
