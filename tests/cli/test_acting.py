"""The commands that act: cancel, cancel-all, flatten and kill-switch, with and without
``--yes``, at a terminal and without one, and refused in read-only settings."""

from __future__ import annotations

import asyncio

import pytest

from cli.support import ACCOUNT, Sims, cli, error_line
from ibconn import IBConnector

pytestmark = pytest.mark.timeout(60)


async def _resting(port: int, client_id: int, count: int) -> list[tuple[str, int]]:
    """``count`` resting limit orders of ``client_id``: their refs and ids."""
    async with IBConnector(port=port, client_id=client_id) as connector:
        handles = [
            await connector.place_limit_order("AMD", 1 + i, "BUY", 50.0) for i in range(count)
        ]
        return [(h.order_ref, h.order_id or 0) for h in handles]


def _working(sims: Sims, client_id: int) -> list[str]:
    orders = cli("orders", "--port", sims.normal.port, "--client-id", client_id, "--json")
    return [o["order_ref"] for o in orders.json()]


def test_cancel_asks_first_and_refuses_without_yes_off_a_terminal(
    sims: Sims, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, _), (second, second_id) = asyncio.run(_resting(sims.normal.port, 41, 2))
    base = ("cancel", "--port", sims.normal.port, "--client-id", 41)
    no_tty = cli(*base, first)
    assert no_tty.status == 2
    assert "refused without --yes" in error_line(no_tty, "cancel")
    declined = cli(*base, first, answer="n\n")
    assert declined.status == 1 and f"cancel {first} (BUY 1 AMD LMT" in declined.out
    assert _working(sims, 41) == [first, second]
    accepted = cli(*base, first, answer="y\n")
    assert accepted.status == 0 and "cancelled" in accepted.out
    assert accepted.err == ""  # TWS's 202 "Order Canceled" is no error to print
    by_id = cli(*base, second_id, "--yes", "--json")
    assert by_id.status == 0, by_id.err
    assert [(o["order_ref"], o["status"]) for o in by_id.json()] == [(second, "cancelled")]
    assert _working(sims, 41) == []
    again = cli(*base, second, "--yes")
    assert again.status == 2 and second in error_line(again, "cancel")
    unknown = cli(*base, "no-such-order", "--yes")
    assert unknown.status == 2 and "no-such-order" in error_line(unknown, "cancel")


def test_cancel_all_cancels_every_working_order_of_the_client_id(sims: Sims) -> None:
    placed = asyncio.run(_resting(sims.normal.port, 42, 3))
    base = ("cancel-all", "--port", sims.normal.port, "--client-id", 42)
    assert cli(*base).status == 2  # no terminal, no --yes
    assert len(_working(sims, 42)) == 3
    done = cli(*base, "--yes", "--json")
    assert done.status == 0, done.err
    assert sorted((o["order_ref"], o["status"]) for o in done.json()) == sorted(
        (ref, "cancelled") for ref, _ in placed
    )
    assert cli(*base, "--yes").out == "no working order\n"


def test_flatten_closes_positions_with_market_orders(sims: Sims) -> None:
    sims.normal.control("set-position", account=ACCOUNT, symbol="META", quantity=-20, avg_cost=580)
    sims.normal.control("set-position", account=ACCOUNT, symbol="AMZN", quantity=15, avg_cost=205)
    base = ("flatten", "--port", sims.normal.port, "--client-id", 43)
    assert cli(*base, "META").status == 2  # no terminal, no --yes
    missing = cli(*base, "TSLA", "--yes")
    assert missing.status == 2 and "no open position in TSLA" in error_line(missing, "flatten")
    closed = cli(*base, "META", "--yes", "--json")
    assert closed.status == 0, closed.err
    [order] = closed.json()
    assert (order["symbol"], order["action"], order["quantity"], order["status"]) == (
        "META",
        "BUY",
        20,
        "filled",
    )
    held = {p["symbol"]: p["quantity"] for p in cli("positions", "--port", sims.normal.port,
                                                     "--json").json()}  # fmt: skip
    assert "META" not in held and held["AMZN"] == 15
    declined = cli(*base, answer="no\n")  # every position: asks first
    assert declined.status == 1 and "15 AMZN" in declined.out
    assert cli("positions", "--port", sims.normal.port, "--json").json() != []


def test_kill_switch_on_off_and_status(sims: Sims) -> None:
    (ref, _), = asyncio.run(_resting(sims.normal.port, 44, 1))  # fmt: skip
    base = ("kill-switch", "--port", sims.normal.port, "--client-id", 44)
    assert cli(*base, "on").status == 2  # no terminal, no --yes
    on = cli(*base, "on", "--yes", "--reason", "test halt", "--no-global-cancel", "--json")
    assert on.status == 0, on.err
    state = on.json()
    assert state["engaged"] is True and state["reason"] == "test halt"
    assert state["global_cancel"] is False and state["cancels_sent"] == 1
    assert _working(sims, 44) == []  # the switch cancelled the working order
    status = cli(*base, "status")
    assert status.status == 0 and status.out.startswith("kill switch: ")
    off = cli(*base, "off", answer="y\n")
    assert off.status == 0 and off.out.endswith("kill switch: off\n")
    assert ref not in _working(sims, 44)


def test_acting_commands_are_refused_in_read_only_settings(
    sims: Sims, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBCONN_READONLY", "true")
    port = ("--port", sims.normal.port)
    for argv in (
        ("cancel", "x", "--yes"),
        ("cancel-all", "--yes"),
        ("flatten", "--yes"),
        ("kill-switch", "on", "--yes"),
        ("kill-switch", "off", "--yes"),
    ):
        result = cli(*argv, *port)
        assert result.status == 2, argv
        assert "readonly" in error_line(result, argv[0])
    assert cli("kill-switch", "status", *port).status == 0  # reading is allowed
