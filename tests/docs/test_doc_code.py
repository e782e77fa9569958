"""Every fenced ``python`` block of ``docs/**/*.md`` and ``README.md`` runs, or says why not.

The blocks of one page run in order in one namespace, like notebook cells, against a
simulated gateway this test starts (``gw``), with a connected ``connector`` and
``asyncio``, ``IBConnector`` and ``SimulatedGateway`` already defined. Top-level
``await`` works. Two rewrites make a block written for a real TWS run here: every
``port=<number>`` becomes the simulated gateway's port, and a script's final
``asyncio.run(main())`` becomes ``await main()``. They run in a temporary directory
holding a copy of ``examples/ibconn.yaml`` as ``ibconn.yaml``. Each block has
``BLOCK_TIMEOUT`` seconds.

A block that is not meant to run (a fragment, a method body, output) has an HTML comment
on the line right before its fence, which renders as nothing:
``<!-- not-run: the reason -->``. An unmarked block that fails fails this test.
"""

from __future__ import annotations

import ast
import asyncio
import re
import shutil
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ibconn
from ibconn import IBConnector
from ibconn.sim import SimConfig, SimulatedGateway

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
PAGES = [p for p in PAGES if not p.startswith("docs/_build/")] + ["README.md"]
BLOCK_TIMEOUT = 30.0
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(\S.*?)\s*-->$")
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    code: str
    not_run: str | None  # the reason, when marked


def blocks(page: str) -> list[Block]:
    """The fenced python blocks of ``page``, each with its not-run reason if marked."""
    text = (ROOT / page).read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].splitlines()
        marker = NOT_RUN.match(before[-1].strip()) if before else None
        found.append(
            Block(page, len(before) + 1, match.group(1), marker.group(1) if marker else None)
        )
    return found


def runnable(code: str, port: int) -> str:
    """``code`` pointed at the simulated gateway, a script's ``asyncio.run`` awaited."""
    code = re.sub(r"\bport=(?!0\b)\d+", f"port={port}", code)
    return re.sub(r"^asyncio\.run\((\w+\(\))\)\s*$", r"await \1", code, flags=re.M)


async def run_block(block: Block, namespace: dict[str, Any], port: int) -> None:
    source = runnable(block.code, port)
    code = compile(
        source, f"{block.page}:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        await asyncio.wait_for(result, BLOCK_TIMEOUT)


def test_blocks_are_found_and_markers_sit_right_before_a_fence() -> None:
    every = [b for page in PAGES for b in blocks(page)]
    assert len(every) >= 30, len(every)
    for page in PAGES:
        lines = (ROOT / page).read_text().splitlines()
        for number, line in enumerate(lines):
            if NOT_RUN.match(line.strip()):
                following = lines[number + 1] if number + 1 < len(lines) else ""
                assert following.startswith("```python"), (
                    f"{page}:{number + 1}: a not-run marker must sit right before a python fence"
                )


@pytest.fixture
async def docs_gateway() -> AsyncIterator[SimulatedGateway]:
    config = SimConfig(seed=1, tick_rate=20, fill_delay=0.0, clock_speed=30)
    async with SimulatedGateway(port=0, config=config) as gw:
        gw.set_price("AAPL", 190.0)
        yield gw


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)])
async def test_the_code_blocks_of_a_page_run(
    page: str, docs_gateway: SimulatedGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a directory of its own (blocks may write files, e.g. a log file) with ibconn.yaml
    shutil.copy(ROOT / "examples" / "ibconn.yaml", tmp_path / "ibconn.yaml")
    monkeypatch.chdir(tmp_path)
    gw = docs_gateway
    connector = IBConnector(host="127.0.0.1", port=gw.port, client_id=77)
    await connector.connect()
    namespace: dict[str, Any] = {
        "__name__": f"docs_{page}",
        "asyncio": asyncio,
        "ibconn": ibconn,
        "IBConnector": IBConnector,
        "SimulatedGateway": SimulatedGateway,
        "gw": gw,
        "connector": connector,
    }
    failures = []
    try:
        for block in blocks(page):
            if block.not_run is not None:
                continue
            try:
                await run_block(block, namespace, gw.port)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                detail = "".join(traceback.format_exception(exc, limit=-3))
                failures.append(f"{block.page}:{block.line}: {type(exc).__name__}\n{detail}")
    finally:
        for value in list(namespace.values()):
            if isinstance(value, IBConnector) and value is not connector:
                await value.disconnect()
        await connector.disconnect()
    assert not failures, (
        "a code block failed; fix it, or mark it '<!-- not-run: reason -->':\n\n"
        + "\n\n".join(failures)
    )
