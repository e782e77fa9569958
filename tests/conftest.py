"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import helpers
import pytest
from helpers import connected

from ibconn import IBConnector
from ibconn.core.logs import disable_logging, enable_logging
from ibconn.sim import SimConfig, SimulatedGateway


@pytest.fixture(autouse=True)
def _no_ibconn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test without stray ``IBCONN_*`` variables from the shell."""
    for name in list(os.environ):
        if name.upper().startswith("IBCONN_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _journal_in_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every connector's order journal (on by default) goes to a fresh directory of this
    test, never to the home directory: ``XDG_STATE_HOME`` points there (subprocesses too)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Capture all of ibconn's log records as ``LEVEL|category|message`` lines."""
    lines: list[str] = []
    enable_logging(
        level="TRACE",
        sink=lambda message: lines.append(str(message).rstrip("\n")),
        fmt="{level}|{extra[category]}|{message}",
        route_ib_async=False,
    )
    yield lines
    disable_logging()


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    """``SimConfig`` overrides for ``gw`` (a package or module overrides this fixture)."""
    return {}


@pytest.fixture
def sim_config(gateway_options: dict[str, Any]) -> SimConfig:
    """The settings of ``gw``: prices that move only when a test says so, fills at once,
    changed by ``gateway_options`` (``tests/sim`` overrides it with the gateway's defaults)."""
    return helpers.sim_config(**gateway_options)


@pytest.fixture
def gateway_prices() -> dict[str, float]:
    """Prices ``gw`` starts with (a package or module overrides this fixture)."""
    return {"AAPL": 190.0}


@pytest.fixture
async def gw(
    sim_config: SimConfig, gateway_prices: dict[str, float]
) -> AsyncIterator[SimulatedGateway]:
    """The one simulated gateway fixture of the suite, on a free port of 127.0.0.1."""
    async with SimulatedGateway(port=0, config=sim_config) as gateway_:
        for symbol, price in gateway_prices.items():
            gateway_.set_price(symbol, price)
        yield gateway_


@pytest.fixture
async def connector(gw: SimulatedGateway) -> AsyncIterator[IBConnector]:
    """A connector on ``gw`` with millisecond intervals, disconnected afterwards."""
    conn = await connected(gw)
    try:
        yield conn
    finally:
        await conn.disconnect()
