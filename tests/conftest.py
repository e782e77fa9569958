"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

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
async def gw() -> AsyncIterator[SimulatedGateway]:
    """A simulated gateway with the order tests' defaults (modules override it)."""
    async with gateway() as gateway_:
        yield gateway_


@pytest.fixture
async def connector(gw: SimulatedGateway) -> AsyncIterator[IBConnector]:
    """A connector on ``gw`` with millisecond intervals, disconnected afterwards."""
    conn = await connected(gw)
    try:
        yield conn
    finally:
        await conn.disconnect()
