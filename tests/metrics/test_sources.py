"""The metrics that come from accessors and ``status()``: stream drops, stale data,
the symbol allow-list and the TWS codes."""

from __future__ import annotations

import asyncio

import pytest
from helpers import connected, until

from ibconn.sim import SimulatedGateway
from metrics.scrape import get_json, scrape, value

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def gateway_prices() -> dict[str, float]:
    return {"AAPL": 190.0, "MSFT": 420.0}


async def test_stream_drops_are_counted_and_kept_after_the_stream_closes(
    gw: SimulatedGateway,
) -> None:
    conn = await connected(gw)
    try:
        server = await conn.serve_metrics(0)
        async with conn.quotes("AAPL") as fast_one, conn.quotes("AAPL") as slow:
            await fast_one.__anext__()
            for n in range(5):
                gw.set_price("AAPL", 180.0 + n)
                async with asyncio.timeout(5):
                    async for quote in fast_one:
                        if quote.ask == round(180.01 + n, 2):
                            break
            stats = slow.statistics()
            assert stats is not None and stats.dropped >= 5
            dropped = stats.dropped
            samples = await scrape(server.url)
            assert value(samples, "ibconn_stream_dropped_total", feed="quotes") == dropped
            assert value(samples, "ibconn_market_data_items_total") > 0
        # both streams closed, the feed with them: the count stays
        await until(lambda: conn.market_data.lines() == (), timeout=5)
        after = await scrape(server.url)
        assert value(after, "ibconn_stream_dropped_total", feed="quotes") == dropped
    finally:
        await conn.disconnect()


async def test_stale_data_makes_readiness_fail_with_the_line_named(gw: SimulatedGateway) -> None:
    # prices do not move in this gateway: a held line's data only gets older
    conn = await connected(gw, metrics={"max_data_age": 1.0, "symbols": ["AAPL"]})
    try:
        server = await conn.serve_metrics(0)
        await conn.subscribe_market_data("AAPL")
        await conn.subscribe_market_data("MSFT")
        await until(lambda: bool(conn.status().market_data.data_age), timeout=5)
        await until(lambda: conn.status().market_data.data_age.get("mkt", 0.0) > 1.0, timeout=5)
        status, body = await get_json(server.url + "/readyz")
        assert status == 503
        assert any(
            reason.startswith("mkt data of AAPL is") and "> 1.0 s" in reason
            for reason in body["reasons"]
        ), body
        samples = await scrape(server.url)
        assert value(samples, "ibconn_data_age_seconds", kind="mkt") > 1.0
        assert value(samples, "ibconn_symbol_data_age_seconds", symbol="AAPL", kind="mkt") > 1.0
        # MSFT is not in the allow-list: no label of its own
        assert not any(dict(labels).get("symbol") == "MSFT" for _, labels in samples), (
            "a symbol outside metrics.symbols got a label"
        )
        assert value(samples, "ibconn_market_data_lines") == 2
        gw.set_price("AAPL", 191.0)  # fresh data again: ready
        gw.set_price("MSFT", 421.0)
        await until(lambda: max(_age(conn, "AAPL"), _age(conn, "MSFT")) < 0.1, timeout=5)
        assert await get_json(server.url + "/readyz") == (200, {"ok": True, "reasons": []})
    finally:
        await conn.disconnect()


def _age(conn: object, symbol: str) -> float:
    lines = conn.status().market_data.lines  # type: ignore[attr-defined]
    return next(line.data_age for line in lines if line.symbol == symbol)


async def test_every_tws_code_is_counted_by_code(gw: SimulatedGateway) -> None:
    conn = await connected(gw)
    try:
        before = conn.supervisor.tws_codes()
        for _ in range(3):
            gw.send_error(1100, "Connectivity between IB and TWS has been lost.", client_id=1)
            gw.send_error(1102, "Connectivity restored, data maintained.", client_id=1)
        gw.send_error(2119, "Market data farm is connecting:usfarm", client_id=1)
        await until(lambda: conn.supervisor.tws_codes().get(2119) == 1, timeout=5)
        codes = conn.supervisor.tws_codes()
        assert codes[1100] == before.get(1100, 0) + 3
        assert codes[1102] == before.get(1102, 0) + 3
        server = await conn.serve_metrics(0)
        samples = await scrape(server.url)
        assert value(samples, "ibconn_tws_codes_total", code="1100") == codes[1100]
        assert value(samples, "ibconn_tws_codes_total", code="2119") == 1
    finally:
        await conn.disconnect()
