"""The commands that only read: check, quotes, bars, history, positions, orders, fills,
account and pnl, against a gateway process, with their tables and their ``--json``."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from cli.support import ACCOUNT, Sims, cli, error_line
from ibconn import IBConnector

pytestmark = pytest.mark.timeout(60)

CHECK_ITEMS = ["session", "data farms", "market data type", "quote SPY", "pacing", "clock"]


def test_check_reports_each_item_healthy_as_a_table_and_as_json(sims: Sims) -> None:
    table = cli("check", "--port", sims.normal.port)
    assert table.status == 0, table.err
    rows = table.out.splitlines()
    assert rows[0].split() == ["item", "status", "detail"]
    for name, row in zip(CHECK_ITEMS, rows[1:], strict=True):
        assert row.startswith(name) and " ok " in row, row
    assert "server version 178" in table.out and ACCOUNT in table.out
    assert "headroom" in table.out and "skew" in table.out
    document = cli("check", "--port", sims.normal.port, "--json", "--symbol", "AAPL").json()
    assert document["healthy"] is True and document["failing"] == []
    items = {item["name"]: item for item in document["items"]}
    assert list(items) == [*CHECK_ITEMS[:3], "quote AAPL", *CHECK_ITEMS[4:]]
    assert items["session"]["value"]["server_version"] == 178
    assert items["session"]["value"]["accounts"] == [ACCOUNT]
    assert items["market data type"]["value"] == "DELAYED"
    assert items["quote AAPL"]["value"]["symbol"] == "AAPL"
    assert items["pacing"]["value"]["limit"] == 50
    assert abs(items["clock"]["value"]["skew_seconds"]) <= 3


def test_check_exits_1_naming_the_unhealthy_item(sims: Sims) -> None:
    result = cli("check", "--port", sims.fast.port, "--json")  # its clock runs 20x fast
    assert result.status == 1
    assert result.err.strip() == "ibconn check: unhealthy: clock"
    document = result.json()
    assert document["healthy"] is False and document["failing"] == ["clock"]


def test_quotes_of_several_symbols_stop_after_count_or_seconds(sims: Sims) -> None:
    table = cli("quotes", "AAPL", "SPY", "--port", sims.normal.port, "--count", 6)
    assert table.status == 0, table.err
    header, *lines = table.out.splitlines()
    assert header.split() == ["time", "symbol", "bid", "bid", "size", "ask", "ask", "size"]
    assert len(lines) == 6
    assert {line.split()[1] for line in lines} == {"AAPL", "SPY"}
    lines_json = cli("quotes", "MSFT", "--port", sims.normal.port, "--count", 3, "--json")
    quotes = lines_json.json_lines()
    assert len(quotes) == 3
    assert all(q["symbol"] == "MSFT" and q["bid"] < q["ask"] for q in quotes)
    timed = cli("quotes", "AAPL", "--port", sims.normal.port, "--seconds", 0.5, "--json")
    assert timed.status == 0 and timed.err == ""
    assert all(q["symbol"] == "AAPL" for q in timed.json_lines())


def test_bars_print_each_bar_as_it_closes(sims: Sims) -> None:
    result = cli("bars", "AAPL", "--port", sims.fast.port, "--count", 2, "--json")
    assert result.status == 0, result.err
    bars = result.json_lines()
    assert len(bars) == 2
    assert all(b["symbol"] == "AAPL" and b["seconds"] == 5 for b in bars)
    assert all(b["low"] <= b["open"] <= b["high"] and b["low"] <= b["close"] for b in bars)
    assert bars[0]["start"] < bars[1]["start"]
    table = cli("bars", "AAPL", "--port", sims.fast.port, "--count", 1)
    assert table.out.splitlines()[0].split()[:3] == ["start", "symbol", "open"]
    assert len(table.out.splitlines()) == 2


def test_history_prints_the_bars_of_one_request(sims: Sims) -> None:
    args = ("history", "AAPL", "--port", sims.normal.port, "--duration", "1800 S")
    document = cli(*args, "--bar-size", "5 mins", "--json").json()
    assert 5 <= len(document) <= 7
    assert all(bar["seconds"] == 300 and bar["symbol"] == "AAPL" for bar in document)
    table = cli(*args, "--bar-size", "10 mins", "--what", "midpoint")
    assert table.status == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split()[:3] == ["start", "open", "high"]
    assert 3 <= len(rows) <= 4


def test_positions_account_and_pnl(sims: Sims) -> None:
    sims.normal.control("set-position", account=ACCOUNT, symbol="JPM", quantity=30, avg_cost=238)
    positions = cli("positions", "--port", sims.normal.port, "--json").json()
    jpm = next(p for p in positions if p["symbol"] == "JPM")
    assert jpm["quantity"] == 30 and jpm["account"] == ACCOUNT and "contract" not in jpm
    table = cli("positions", "--port", sims.normal.port)
    row = next(line.split() for line in table.out.splitlines() if " JPM " in line)
    assert row[:4] == [ACCOUNT, "JPM", "STK", "30"]
    summary = cli("account", "--port", sims.normal.port, "--json").json()
    assert summary["account"] == ACCOUNT and summary["net_liquidation"] > 0
    assert "net liquidation" in cli("account", "--port", sims.normal.port).out
    pnl = cli("pnl", "--port", sims.normal.port, "--json").json()
    assert pnl["account"]["account"] == ACCOUNT
    assert any(p["symbol"] == "JPM" for p in pnl["positions"])
    text = cli("pnl", "--port", sims.normal.port, "--account", ACCOUNT).out
    assert text.startswith(f"account {ACCOUNT}: daily ")


async def _place(port: int, client_id: int) -> tuple[str, str]:
    """A resting limit order and a filled market order of ``client_id``; returns their refs."""
    async with IBConnector(port=port, client_id=client_id) as connector:
        resting = await connector.place_limit_order("NVDA", 10, "BUY", 100.0)
        bought = await connector.place_market_order("NVDA", 5, "BUY")
        await connector.wait_for_order(bought, timeout=10)
        return resting.order_ref, bought.order_ref


def test_orders_and_fills_of_the_client_id(sims: Sims) -> None:
    resting, bought = asyncio.run(_place(sims.normal.port, client_id=21))
    orders = cli("orders", "--port", sims.normal.port, "--client-id", 21, "--json").json()
    assert [(o["order_ref"], o["status"], o["limit_price"]) for o in orders] == [
        (resting, "submitted", 100.0)
    ]
    table = cli("orders", "--port", sims.normal.port, "--client-id", 21, "--all")
    assert resting in table.out and "order ref" in table.out
    assert cli("orders", "--port", sims.normal.port, "--client-id", 22).out == (
        "no working order\n"
    )
    fills = cli("fills", "--port", sims.normal.port, "--client-id", 21, "--json").json()
    assert [(f["order_ref"], f["symbol"], f["quantity"]) for f in fills] == [(bought, "NVDA", 5)]
    assert bought in cli("fills", "--port", sims.normal.port, "--client-id", 21).out


def test_unknown_symbol_exits_2_and_unreachable_gateway_exits_1(sims: Sims) -> None:
    unknown = cli("quotes", "AAPL", "NOSUCH", "--port", sims.normal.port, "--count", 1)
    assert unknown.status == 2 and unknown.out == ""
    assert "NOSUCH" in error_line(unknown, "quotes")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    unreachable = cli("positions", "--port", free_port, "--timeout", 2)
    assert unreachable.status == 1
    assert str(free_port) in error_line(unreachable, "positions")


def test_settings_come_from_flags_then_environment_then_config_file(
    sims: Sims, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ibconn.yaml"
    config.write_text("ib_connector:\n  port: 1\n  client_id: 31\n")
    by_flag = cli("check", "--config", config, "--port", sims.normal.port, "--json").json()
    assert by_flag["items"][0]["value"]["client_id"] == 31  # the file's, the flag's port
    monkeypatch.setenv("IBCONN_PORT", str(sims.normal.port))
    monkeypatch.setenv("IBCONN_CLIENT_ID", "32")
    by_env = cli("check", "--config", config, "--json").json()
    assert by_env["items"][0]["value"]["client_id"] == 32
    config.write_text("ib_connector:\n  prot: 4002\n")
    typo = cli("positions", "--config", config)
    assert typo.status == 2 and "prot" in error_line(typo, "positions")
    monkeypatch.setenv("IBCONN_PORT", "70000")
    out_of_range = cli("account", "--config", tmp_path / "missing.yaml")
    assert out_of_range.status == 2 and "does not exist" in error_line(out_of_range, "account")
    bad_env = cli("account")
    assert bad_env.status == 2 and "IBCONN_PORT" in error_line(bad_env, "account")
