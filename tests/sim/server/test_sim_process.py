"""``python -m ibconn sim`` as its own process: flags, control subcommands, state file."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock

from ibconn.__main__ import main

from ..conftest import connect, wait_until


@asynccontextmanager
async def sim_process(*flags: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, int]]:
    """A gateway process on free ports with a control port: ``(process, port, control)``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ibconn", "sim", "--port", "0", "--control-port", "0",
        "--log-level", "WARNING", *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        listening = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        control = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        assert listening.startswith("LISTENING 127.0.0.1:"), listening
        assert control.startswith("CONTROL 127.0.0.1:"), control
        yield proc, int(listening.rsplit(":", 1)[1]), int(control.rsplit(":", 1)[1])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def ibconn_sim(*argv: str) -> tuple[int, str, str]:
    """Run ``python -m ibconn sim ARGV`` to the end: ``(status, stdout, stderr)``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ibconn", "sim", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ---------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--port", "70000"], "port must be 0..65535, not 70000"),
        (["--clock-speed", "0"], "clock speed must be > 0"),
        (["--fill-delay", "soon"], "fill delay must be a number, not 'soon'"),
        (["--seed", "1.5"], "seed must be a whole number"),
        (["--tick-rate", "-3"], "tick rate must be >= 0"),
        (["fill", "x", "--control-port", "0"], "port must be 1..65535"),
    ],
)
def test_bad_flags_exit_2_with_the_reason(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", *argv])
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


async def test_bad_flag_in_a_real_process_has_no_traceback() -> None:
    status, _, err = await ibconn_sim("--port", "70000")
    assert status == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "ibconn sim: error: argument --port: port must be 0..65535, not 70000"
    )


def test_settings_file_typo_gets_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "sim.yaml"
    settings.write_text("seed: 3\ntick_rat: 5\n")
    assert main(["sim", "--config", str(settings)]) == 2
    err = capsys.readouterr().err
    assert err == "ibconn sim: unknown simulator setting 'tick_rat' (did you mean 'tick_rate'?)\n"
    instruments = tmp_path / "instruments.yaml"
    instruments.write_text(
        "- {symbol: ACME, sec_type: STK, con_id: 1, exchange: SMART, currency: USD,"
        " start_pric: 10}\n"
    )
    assert main(["sim", "--instruments", str(instruments)]) == 2
    assert "did you mean 'start_price'?" in capsys.readouterr().err


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: 7497)",
        "(default: 1)",
        "(default: 4.0)",
        "(default: 0.05)",
        "(default: off)",
        "nightly-reset",
    ):
        assert shown in text


async def test_settings_reach_the_gateway(tmp_path: Path, ibs: Callable[[], IB]) -> None:
    instruments = tmp_path / "instruments.yaml"
    instruments.write_text(
        "instruments:\n"
        "  - {symbol: ACME, sec_type: STK, con_id: 4242, exchange: SMART, currency: USD,"
        " start_price: 12.5, primary_exchange: NYSE}\n"
    )
    async with sim_process(
        "--instruments", str(instruments), "--clock-speed", "60", "--fill-delay", "0", "--seed", "9"
    ) as (_, port, _control):
        ib = await connect(ibs(), port)
        [acme] = await ib.qualifyContractsAsync(Stock("ACME", "SMART", "USD"))
        assert acme.conId == 4242
        assert await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD")) == [None]
        before = await ib.reqCurrentTimeAsync()
        await asyncio.sleep(0.5)
        after = await ib.reqCurrentTimeAsync()
        assert (after - before).total_seconds() >= 20  # 60 simulated seconds per second


# ---------------------------------------------------------------------- control subcommands


async def test_subcommands_drive_a_running_gateway_process(ibs: Callable[[], IB]) -> None:
    async with sim_process("--tick-rate", "20") as (_, port, control):
        ib = await connect(ibs(), port)
        codes: list[int] = []
        ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
        [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        trade = ib.placeOrder(aapl, LimitOrder("BUY", 10, 1.0, orderRef="far"))
        await wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
        cp = ("--control-port", str(control))

        status, out, _ = await ibconn_sim("fill", "far", "--quantity", "4", *cp)
        assert status == 0 and json.loads(out)["shares"] == 4
        await wait_until(lambda: trade.orderStatus.filled == 4, what="the partial fill")

        status, _, _ = await ibconn_sim("modify", "far", "--price", "1.5", *cp)
        assert status == 0
        await wait_until(lambda: trade.order.lmtPrice == 1.5, what="the change by hand")

        assert (await ibconn_sim("error", "2110", *cp))[0] == 0
        await wait_until(lambda: 2110 in codes, what="2110")

        status, _, err = await ibconn_sim("fill", "nope", *cp)
        assert status == 1 and err == "ibconn sim: fill: no working order with orderRef 'nope'\n"

        assert (await ibconn_sim("drop", *cp))[0] == 0
        await wait_until(lambda: not ib.isConnected(), what="the drop")
    status, _, err = await ibconn_sim("status", *cp)
    assert status == 1 and "no gateway control port" in err


# ---------------------------------------------------------------------- state file


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_state_file_keeps_orders_positions_executions_across_a_process_restart(
    sig: signal.Signals, tmp_path: Path, ibs: Callable[[], IB]
) -> None:
    state = tmp_path / "state" / "gw.json"
    flags = ["--state-file", str(state), "--fill-delay", "0"]
    if sig == signal.SIGTERM:  # only the shutdown write can have saved it
        settings = tmp_path / "sim.yaml"
        settings.write_text("state_save_delay: 600\n")
        flags += ["--config", str(settings)]
    async with sim_process(*flags) as (proc, port, _):
        ib = await connect(ibs(), port)
        [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        bought = ib.placeOrder(aapl, MarketOrder("BUY", 7, orderRef="bought"))
        await wait_until(lambda: bought.orderStatus.status == "Filled", what="the fill")
        resting = ib.placeOrder(aapl, LimitOrder("BUY", 3, 1.0, orderRef="rest", tif="GTC"))
        await wait_until(lambda: resting.orderStatus.status == "Submitted", what="Submitted")
        exec_id = bought.fills[0].execution.execId
        last_id = resting.order.orderId
        ib.disconnect()
        if sig == signal.SIGKILL:

            def flushed() -> bool:
                try:
                    data = json.loads(state.read_text())
                except (OSError, ValueError):
                    return False
                return len(data["orders"]) == 2

            await wait_until(flushed, timeout=5, what="the debounced write")
        else:
            assert not state.exists()
        proc.send_signal(sig)
        await asyncio.wait_for(proc.wait(), 10)
    assert state.exists() and not list(state.parent.glob(".gw.json.*"))  # no temp files left
    async with sim_process(*flags) as (_, port, _):
        ib = await connect(ibs(), port)
        await wait_until(lambda: bool(ib.positions()), what="positions")
        [position] = ib.positions()
        assert (position.contract.symbol, position.position) == ("AAPL", 7)
        assert [f.execution.execId for f in await ib.reqExecutionsAsync()] == [exec_id]
        open_orders = await ib.reqOpenOrdersAsync()
        assert [(t.order.orderRef, t.order.totalQuantity) for t in open_orders] == [("rest", 3)]
        assert ib.client.getReqId() > last_id  # the order id sequence went on
        cash = {
            v.tag: float(v.value)
            for v in await ib.accountSummaryAsync()
            if v.tag == "TotalCashValue"
        }
        assert cash["TotalCashValue"] < 1_000_000 - 7 * 100  # paid for the shares


async def test_damaged_state_file_is_a_one_line_error(tmp_path: Path) -> None:
    state = tmp_path / "gw.json"
    state.write_text("{half")
    status, _, err = await ibconn_sim("--port", "0", "--state-file", str(state))
    assert status == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"ibconn sim: state file {state} is not JSON")
