"""The journal survives the process: SIGKILL a connector's process, start another, and find
the kill switch and the exit plans restored (and announced) and every order event kept."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import drain, fast, until

from ibconn import IBConnector
from ibconn.core.codes import Severity
from ibconn.errors import RiskRejectedError
from ibconn.sim import SimulatedGateway

# The process that is killed: it trades, sets exits, engages the kill switch, says "ready"
# (with what it did, as JSON) once the journal has committed, then waits to be killed.
HOLDER = """
import asyncio, json, sys
from ibconn import IBConnector

async def main(port: int, path: str) -> None:
    c = IBConnector(port=port, client_id=1, reconnect_attempts=1, journal_path=path)
    await c.connect()
    bought = await c.place_market_order("AAPL", 10, "BUY")
    await c.wait_for_order(bought, timeout=10)
    await c.set_stop_loss("AAPL", price=180.0)
    await c.set_take_profit("AAPL", price=200.0)
    cancelled = await c.place_limit_order("AAPL", 1, "BUY", 150.0)
    await c.cancel_order(cancelled)
    resting = await c.place_limit_order("AAPL", 2, "BUY", 151.0)
    state = await c.kill_switch("test halt")
    assert await c.journal.flush()
    plans = c.exit_plans()
    refs = [bought.order_ref, cancelled.order_ref, resting.order_ref]
    refs += [p.stop_order.order_ref for p in plans] + [p.take_profit_order.order_ref for p in plans]
    print("ready " + json.dumps({"refs": refs, "since": state.since.isoformat()}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


async def _holder_ready(
    gw: SimulatedGateway, path: Path
) -> tuple[asyncio.subprocess.Process, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(gw.port), str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
    except TimeoutError:
        proc.kill()
        raise
    if not line.startswith("ready "):
        proc.kill()
        _, err = await proc.communicate()
        raise AssertionError(f"the holder process failed: {line!r} {err.decode()[-3000:]}")
    return proc, json.loads(line.removeprefix("ready "))


async def test_sigkilled_connector_leaves_kill_switch_exits_and_every_event_in_the_journal(
    gw: SimulatedGateway, tmp_path: Path, log_lines: list[str]
) -> None:
    path = tmp_path / "journal.sqlite3"
    proc, told = await _holder_ready(gw, path)
    proc.send_signal(signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL

    connector = IBConnector(**fast(gw, journal_path=path))
    alerts = connector.alerts()
    await connector.connect()
    try:
        state = connector.kill_switch_state
        assert state.engaged
        assert state.reason == "test halt"
        assert state.since is not None and state.since.isoformat() == told["since"]
        with pytest.raises(RiskRejectedError):  # the switch holds across the crash
            await connector.place_limit_order("AAPL", 1, "BUY", 150.0)
        restored = [a for a in drain(alerts) if "restored from the order journal" in a.message]
        assert len(restored) == 1
        assert restored[0].severity is Severity.WARNING
        assert "kill switch ENGAGED" in restored[0].message
        assert "AAPL" in restored[0].message and "stop loss 180" in restored[0].message
        assert any(
            line.startswith("INFO|orders|restored from the order journal") for line in log_lines
        )
        await until(lambda: len(connector.exit_plans()) == 1)
        (plan,) = connector.exit_plans()
        assert plan.symbol == "AAPL" and plan.position == 10
        assert plan.stop_loss is not None and plan.stop_loss.price == 180.0
        assert plan.take_profit is not None and plan.take_profit.price == 200.0
    finally:
        await connector.disconnect()

    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ibconn", "journal", "--journal", str(path), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    events = json.loads(out.stdout)
    first_run = [e for e in events if e["run_id"] == events[0]["run_id"]]
    kinds = {(e["order_ref"], e["kind"]) for e in first_run}
    bought, cancelled, resting, stop, take = told["refs"]
    for ref in told["refs"]:
        assert (ref, "place") in kinds, ref
    assert (bought, "fill") in kinds
    assert (cancelled, "cancel") in kinds
    assert any(e["order_ref"] == cancelled and e["status"] == "cancelled" for e in first_run)
    for ref in (resting, stop, take):  # the kill switch cancelled them
        assert (ref, "cancel") in kinds, ref
    kill = [e for e in first_run if e["kind"] == "kill_switch"]
    assert kill[0]["detail"]["engaged"] is True and kill[0]["detail"]["reason"] == "test halt"
    place = next(e for e in first_run if e["order_ref"] == bought and e["kind"] == "place")
    assert place["detail"]["decided_by"]["readonly"] is False
    assert "max_position" in place["detail"]["decided_by"]["risk"]


async def test_a_readonly_connector_restores_an_engaged_kill_switch_without_sending_cancels(
    gw: SimulatedGateway, tmp_path: Path
) -> None:
    # `ibconn kill-switch status` connects read-only: finding the switch engaged in the
    # journal must not send TWS's global cancel (or any cancel) on its behalf.
    path = tmp_path / "journal.sqlite3"
    first = IBConnector(**fast(gw, journal_path=path))
    await first.connect()
    await first.place_limit_order("AAPL", 1, "BUY", 150.0)
    await first.kill_switch("halt for the readonly test", global_cancel=True)
    assert await first.journal.flush()
    await first.disconnect()

    reader = IBConnector(**fast(gw, journal_path=path, readonly=True))
    await reader.connect()
    try:
        assert reader.kill_switch_state.engaged
        assert reader.kill_switch_state.reason == "halt for the readonly test"
        await reader.server_time()  # a round trip: anything sent at connect has arrived
        sent = {m.msg_id for m in gw.received_messages(1)}
        assert not sent & {4, 58}, f"cancels sent by a read-only connector: {sent & {4, 58}}"
    finally:
        await reader.disconnect()
