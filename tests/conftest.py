"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import connected, gateway

from ibconn import IBConnector
from ibconn.core.logs import disable_logging, enable_logging
from ibconn.sim import SimulatedGateway


@pytest.fixture(autouse=True)
def _no_ibconn_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test without stray ``IBCONN_*`` variables from the shell."""
    for name in list(os.environ):
        if name.upper().startswith("IBCONN_"):
            monkeypatch.delenv(name)


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
async def gw(gateway_options: dict[str, Any]) -> AsyncIterator[SimulatedGateway]:
    """A simulated gateway with the order tests' defaults, changed by ``gateway_options``."""
    async with gateway(**gateway_options) as gateway_:
        yield gateway_


@pytest.fixture
async def connector(gw: SimulatedGateway) -> AsyncIterator[IBConnector]:
    """A connector on ``gw`` with millisecond intervals, disconnected afterwards."""
    conn = await connected(gw)
    try:
        yield conn
    finally:
        await conn.disconnect()
