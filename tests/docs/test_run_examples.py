"""Every script in examples/ exits 0 and prints what it claims, both against a simulated
gateway it starts itself and against one it did not start that already holds positions
and other clients' working orders (run with ``--port``)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ibconn import IBConnector
from ibconn.sim import SimConfig, SimulatedGateway

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# What each example says it shows, in order; "own" / "busy" lines only in that mode.
CLAIMS: dict[str, list[str]] = {
    "sim_quickstart.py": [r"^AAPL bid +\d+ x [\d.]+ +ask", r"^\d+ hourly bars, last: BarData"],
    "place_orders.py": [
        r"-1/entry: filled 100 @ [\d.]+$",
        r"^  fill BUY 100 AAPL @ [\d.]+ commission",
        r"^bracket: submitted pre_submitted pre_submitted$",
        r"^refused: limit_price=[\d.]+ is not on the price increment of AAPL",
        r"^cancelled: cancelled$",
        r"own:^rejected by TWS: 201 Order rejected",
        r"busy:^accepted, no error to handle: \S+ filled$",
        r"^cancel_all_orders: 3 cancelled, 0 still working$",
    ],
    "risk_and_exits.py": [
        r"own:^trading AAPL \(about [\d.]+\)",
        r"busy:^trading AMZN \(about [\d.]+\)",  # AAPL and MSFT are held already
        r"^refused by max_order_quantity: limit 500",
        r"^refused by blocked_symbols",
        r"^position [A-Z]+ 200$",
        r"^refused by max_position: limit 300.0, order 301.0$",
        r"^exits: stop ExitLevel\(.*percent=3.0.*take profit ExitLevel",
        r"^[A-Z]+ position 200, worst-case long 300, gross",
        r"^kill switch: engaged=True, cancels sent 3$",
        r"^refused by kill_switch",
        r"^closing order: filled$",
    ],
    "stream_quotes.py": [
        r"^quotes:$",
        r"^  [\d:.]+ AAPL bid [\d.]+ x \d+  ask",
        r"^trades:$",
        r"^  [\d:]+ \d+ @ [\d.]+ \(",
        r"own:^1 min bars:$",
        r"busy:^5 secs bars:$",
        r"^  \d\d:\d\d O [\d.]+ H [\d.]+ L [\d.]+ C [\d.]+ V \d+",
        r"^MSFT snapshot: bid [\d.]+ ask [\d.]+$",
        r"^history: \d+ hourly bars, last close [\d.]+$",
    ],
    "positions_pnl.py": [
        r"own:^  \[fill\] +DU\w+ AAPL 100 avg cost",
        r"^positions:$",
        # held before the example ran (AAPL moves as the other examples trade it)
        r"busy:^  \[\w+\] +DU\w+ MSFT -50 avg cost 400 ",
        r"^account DU\w+ \(USD\): net liquidation [\d.]+",
        r"^what-if BUY 500 AAPL: margin .* nothing was placed$",
        r"own:^reconciled: DU\w+ AAPL",
    ],
    "pacing_burst.py": [
        r"at most 20 messages in any",
        r"^cancel sent while \d+ data requests still waited$",
        r"^done: 150 answers",
        r"^error 100 received: 0$",
    ],
}


# Run alone, after the others: its claim (no error 100) holds only while neither side's
# event loop is starved of CPU, which six examples at once on two cores can do.
ALONE = "pacing_burst.py"


async def run_all(*args: str) -> dict[str, tuple[int, str]]:
    together = [script for script in CLAIMS if script != ALONE]
    outputs = await asyncio.gather(*(run(script, *args) for script in together))
    results = dict(zip(together, outputs, strict=True))
    results[ALONE] = await run(ALONE, *args)
    return results


def test_every_example_has_its_claims() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CLAIMS)


async def run(script: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 150)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        return -1, out.decode(errors="replace") + "\n(killed after 150 s)"
    return process.returncode or 0, out.decode(errors="replace")


def unmet(output: str, claims: list[str], mode: str) -> list[str]:
    """The claims (in order) that ``output`` does not show."""
    missing: list[str] = []
    lines = output.splitlines()
    at = 0
    for claim in claims:
        only, _, pattern = claim.rpartition(":^") if ":^" in claim else ("", "", claim)
        if only and only != mode:
            continue
        pattern = "^" + pattern if only else pattern
        found = next((i for i in range(at, len(lines)) if re.search(pattern, lines[i])), None)
        if found is None:
            missing.append(pattern)
        else:
            at = found + 1
    return missing


def check(results: dict[str, tuple[int, str]], mode: str) -> None:
    problems = []
    for script, (code, output) in results.items():
        missing = unmet(output, CLAIMS[script], mode)
        if code != 0 or missing:
            problems.append(f"{script} ({mode}): exit {code}, missing {missing}\n{output[-3000:]}")
    assert not problems, "\n\n".join(problems)


async def test_every_example_runs_against_its_own_gateway() -> None:
    check(await run_all(), "own")


@pytest.fixture
async def busy_gateway() -> AsyncIterator[SimulatedGateway]:
    """A gateway at real time that holds AAPL and MSFT and another client's working orders."""
    async with SimulatedGateway(port=0, config=SimConfig(seed=3)) as gw:
        other = IBConnector(host="127.0.0.1", port=gw.port, client_id=30)
        async with other:
            account = other.accounts[0]
            await other.place_limit_order("AAPL", 10, "BUY", 100.0)
            await other.place_limit_order("MSFT", 10, "SELL", 900.0)
        gw.set_position(account, "AAPL", 100, 185.0)
        gw.set_position(account, "MSFT", -50, 400.0)
        yield gw


def working(gw: SimulatedGateway, client_id: int) -> list[str]:
    return sorted(
        f"{o.action} {o.instrument.symbol}"
        for o in gw.orders
        if o.client_id == client_id and o.status == "Submitted"
    )


async def test_every_example_runs_against_a_busy_gateway_it_did_not_start(
    busy_gateway: SimulatedGateway,
) -> None:
    gw = busy_gateway
    assert working(gw, 30) == ["BUY AAPL", "SELL MSFT"]
    check(await run_all("--port", str(gw.port)), "busy")
    assert working(gw, 30) == ["BUY AAPL", "SELL MSFT"]  # no example touched them
