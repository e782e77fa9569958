"""Fixtures of the bridge tests: a real nats-server with JetStream on 127.0.0.1.

``nats_server`` is a running :class:`~ibconn.bridge.natsd.NatsServer` on a free port
with its store in the test's temporary directory, stopped after the test; a test may
``restart()`` or ``kill()`` it. ``nats_url`` is its client URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ibconn.bridge.natsd import NatsServer


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A nats-server with JetStream on 127.0.0.1 and a free port, for one test."""
    async with NatsServer(store_dir=tmp_path / "nats-store") as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The client URL of ``nats_server`` (``nats://127.0.0.1:<port>``)."""
    return nats_server.url
