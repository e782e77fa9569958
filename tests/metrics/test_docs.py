"""``docs/metrics.md`` names every metric a scrape shows, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import connected
from prometheus_client.parser import text_string_to_metric_families

from ibconn.sim import SimulatedGateway
from metrics.scrape import get

PAGE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(ibconn_[a-z_]+)` \| (gauge|counter|histogram) \|", re.M)


async def test_the_page_lists_every_metric_with_its_type(gw: SimulatedGateway) -> None:
    documented = {
        (name.removesuffix("_total") if kind == "counter" else name): kind
        for name, kind in ROW.findall(PAGE.read_text())
    }
    conn = await connected(gw)
    try:
        server = await conn.serve_metrics(0)
        status, body = await get(server.url + "/metrics")
        assert status == 200
    finally:
        await conn.disconnect()
    served = {
        family.name: family.type
        for family in text_string_to_metric_families(body)
        if not family.name.endswith("_created")  # prometheus_client's creation times
    }
    assert served == documented
