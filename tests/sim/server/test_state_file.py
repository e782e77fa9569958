"""The state file in-process: debounced, atomic writes and a faithful round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from ib_async import IB, LimitOrder, Stock

from ibconn.errors import ConfigError
from ibconn.sim import SimConfig, SimulatedGateway

from ..conftest import wait_until


async def test_changes_are_written_once_per_debounce_window_and_on_stop(
    tmp_path: Path, ibs: Callable[[], IB]
) -> None:
    path = tmp_path / "gw.json"
    config = SimConfig(state_file=path, state_save_delay=0.3, fill_delay=0, tick_rate=0)
    async with SimulatedGateway(config=config) as gw:
        ib = ibs()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
        [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        trades = [
            ib.placeOrder(aapl, LimitOrder("BUY", 1, 1.0, orderRef=f"r{i}", tif="GTC"))
            for i in range(3)
        ]
        await wait_until(lambda: all(t.orderStatus.status == "Submitted" for t in trades))
        state = gw.state_file
        assert state is not None
        await wait_until(lambda: state.saves == 1, what="one debounced write")
        assert len(json.loads(path.read_text())["orders"]) == 3
        gw.set_position("DU0000001", "MSFT", 4, 400.0)
        before = gw.positions()
        truth = [(o.order_ref, o.status, o.perm_id) for o in gw.orders]
        next_id = gw.next_order_id
    assert state.saves >= 2  # the stop wrote the last change
    assert [p.name for p in tmp_path.iterdir()] == ["gw.json"]  # noqa: ASYNC240 - no temp file
    async with SimulatedGateway(config=config) as again:
        assert [(o.order_ref, o.status, o.perm_id) for o in again.orders] == truth
        assert [(p.instrument.symbol, p.quantity) for p in again.positions()] == [
            (p.instrument.symbol, p.quantity) for p in before
        ]
        assert again.next_order_id == next_id
        assert len(again.broker.open_orders()) == 3


async def test_a_state_file_naming_an_unknown_instrument_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gw.json"
    async with SimulatedGateway(config=SimConfig(state_file=path)) as gw:
        gw.set_position("DU0000001", "MSFT", 4, 400.0)
    data = json.loads(path.read_text())
    data["journal"][0]["instrument"] = 999
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="con_id 999"):
        async with SimulatedGateway(config=SimConfig(state_file=path)):
            pass
