"""The control port: every fault control can be driven through it."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from ib_async import IB, LimitOrder, Stock

from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.server.cli import add_sim_parser
from ibconn.sim.server.control import COMMANDS, ControlCommandError, ControlServer, send_command

from ..conftest import wait_until


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(tick_rate=40, fill_delay=0.01)


@pytest.fixture
async def control(gw: SimulatedGateway) -> AsyncIterator[ControlServer]:
    async with ControlServer(gw, 0) as server:
        yield server


async def place_resting(ib: IB, ref: str) -> None:
    [contract] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    trade = ib.placeOrder(contract, LimitOrder("BUY", 10, 1.0, orderRef=ref, tif="GTC"))
    await wait_until(lambda: trade.orderStatus.status == "Submitted", what=f"{ref} Submitted")


# (command, args); "{ref}" gets a working order's orderRef, "{exec}" an exec id.
CASES: dict[str, dict[str, Any]] = {
    "status": {},
    "clients": {},
    "orders": {},
    "drop": {"client_id": 99},
    "restart": {"downtime": 0.01},
    "tws-restart": {"downtime": 0.01, "next_valid_id": 1, "keep_client_ids": True},
    "stall": {"client_id": 99},
    "unstall": {"client_id": 99},
    "error": {"code": 2104, "client_id": 1},
    "pause-market": {},
    "resume-market": {},
    "set-price": {"symbol": "AAPL", "price": 190.0},
    "fail-next": {"msg_id": 49, "code": 200},
    "drop-after-next": {"msg_id": 49, "client_id": 99},
    "fill": {"order_ref": "{ref}", "quantity": 1},
    "cancel": {"order_ref": "{ref}"},
    "lose-order": {"order_ref": "{ref}"},
    "correct": {"exec_id": "{exec}", "price": 1.0},
    "set-position": {"account": "DU0000001", "symbol": "MSFT", "quantity": 5, "avg_cost": 400},
    "nightly-reset": {"downtime": 0.01},
    "rollover": {},
    "connection-lost": {"client_id": 1},
    "connection-restored": {"data_lost": True, "client_id": 1},
    "compete": {"client_id": 1},
    "release": {"client_id": 1},
    "farm-down": {"farm": "usfuture"},
    "farm-up": {"farm": "usfuture"},
    "output": {"latency": 0.01, "split": True},
    "reject": {"order_ref": "{ref}", "reason": "no", "status": "Inactive"},
    "cancel-race": {"order_ref": "{ref}"},
    "modify": {"order_ref": "{ref}", "quantity": 20, "price": 1.5},
    "duplicate-exec": {"times": 1},
    "delay-commission": {"seconds": 0.01},
    "drop-commission": {},
    "status-first": {},
    "stale-status": {"order_ref": "{ref}"},
}


def test_every_command_has_a_case() -> None:
    assert sorted(CASES) == sorted(c.name for c in COMMANDS)


@pytest.mark.parametrize("name", sorted(CASES))
async def test_every_command_runs_through_the_control_port(
    name: str, gw: SimulatedGateway, control: ControlServer, ibs: Callable[[], IB]
) -> None:
    ib = ibs()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
    await place_resting(ib, "ref-1")
    exec_id = (await gw.fill("ref-1", quantity=1)).exec_id
    args = {
        k: (v.format(ref="ref-1", exec=exec_id) if isinstance(v, str) else v)
        for k, v in CASES[name].items()
    }
    result = await send_command(control.port, name, args, timeout=5)
    json.dumps(result)  # JSON all the way
    if name == "status":
        assert result["port"] == gw.port and result["clients"] == [1]
    if name == "orders":
        assert [o["order_ref"] for o in result] == ["ref-1"]
    if name == "modify":
        assert result["total_quantity"] == 20 and result["lmt_price"] == 1.5


async def test_control_effects_reach_the_client(
    gw: SimulatedGateway, control: ControlServer, ibs: Callable[[], IB]
) -> None:
    ib = ibs()
    codes: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
    await place_resting(ib, "ctl")
    [trade] = ib.openTrades()
    execution = await send_command(control.port, "fill", {"order_ref": "ctl"})
    assert execution["shares"] == 10 and execution["order_ref"] == "ctl"
    await wait_until(lambda: trade.orderStatus.status == "Filled", what="the fill")
    await send_command(control.port, "nightly-reset", {"downtime": 0.05})
    await wait_until(lambda: 1102 in codes, what="1102")
    assert codes.index(1100) < codes.index(1102)


async def test_control_errors_are_answers_not_crashes(
    gw: SimulatedGateway, control: ControlServer
) -> None:
    with pytest.raises(ControlCommandError, match="unknown command 'nope'"):
        await send_command(control.port, "nope")
    with pytest.raises(ControlCommandError, match="no working order with orderRef 'x'"):
        await send_command(control.port, "fill", {"order_ref": "x"})
    with pytest.raises(ControlCommandError, match="price must be float"):
        await send_command(control.port, "set-price", {"symbol": "AAPL", "price": "high"})
    with pytest.raises(ControlCommandError, match="unknown argument 'pirce'"):
        await send_command(control.port, "set-price", {"symbol": "AAPL", "pirce": 1})
    with pytest.raises(ControlCommandError, match="status must be one of"):
        await send_command(control.port, "reject", {"order_ref": "x", "status": "Gone"})
    reader, writer = await asyncio.open_connection("127.0.0.1", control.port)
    writer.write(b"{not json\n")
    answer = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert answer["ok"] is False and "not JSON" in answer["error"]
    writer.close()
    assert (await send_command(control.port, "status"))["listening"] is True


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_command_is_an_ibconn_sim_subcommand(name: str) -> None:
    parser = argparse.ArgumentParser(prog="ibconn")
    add_sim_parser(parser.add_subparsers(dest="cmd"))
    command = next(c for c in COMMANDS if c.name == name)
    case = {
        k: (v.format(ref="r", exec="e") if isinstance(v, str) else v)
        for k, v in CASES[name].items()
    }
    argv = ["sim", name, "--control-port", "7600"]
    for p in command.params:
        if p.name not in case:
            continue
        value = case[p.name]
        if p.required:
            argv.append(str(value))
        elif p.kind is bool:
            argv.append(f"--{p.name.replace('_', '-')}")
        else:
            argv += [f"--{p.name.replace('_', '-')}", str(value)]
    args = parser.parse_args(argv)
    assert args.command is command and args.control_port == 7600
    assert {k: getattr(args, k) for k in case} == case
