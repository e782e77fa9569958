"""Hostile clients against the simulated gateway: memory stays bounded by bytes (issue 18).

Clients send many large requests (up to 1 MiB each) and leave; the
gateway's received-message logs must stay within ``message_log_bytes`` and
what stays allocated after the clients left (measured with tracemalloc) must
stay within a small multiple of it, while the well-behaved client is served.

``FUZZ_PROFILE=deep`` runs more and bigger examples.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim.conftest import RawClient
from sim.hostile import Arena, encode

from ibconn.sim import SimConfig

DEEP = os.environ.get("FUZZ_PROFILE", "") == "deep"
BUDGET = 2 * 1024 * 1024
PEAKS: list[int] = []
RETAINED: list[int] = []


@pytest.fixture(scope="module")
def arena() -> Iterator[Arena]:
    config = SimConfig(
        tick_rate=20,
        fill_delay=0.0,
        send_farm_notices=False,
        message_log_bytes=BUDGET,
        rate_limit=100,
        flood_disconnect_rate=None,
    )
    hostile = Arena(config).start()
    try:
        yield hostile
    finally:
        hostile.stop()
    if PEAKS:
        print(
            f"\nsim-hostile memory: examples={len(PEAKS)} frames={hostile.frames_sent} "
            f"served={hostile.served_checks}/{hostile.checks} peak={max(PEAKS) / 2**20:.1f} MiB "
            f"retained max={max(RETAINED) / 2**20:.2f} MiB budget={BUDGET / 2**20:.0f} MiB"
        )


@settings(
    max_examples=20 if DEEP else 6,
    deadline=None,
    derandomize=not DEEP,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    clients=st.integers(1, 4),
    messages=st.integers(1, 24),
    size=st.sampled_from([1024, 64 * 1024, 256 * 1024, 1024 * 1024]),
)
def test_logs_stay_within_their_byte_budget_and_leaving_clients_free_theirs(
    arena: Arena, clients: int, messages: int, size: int
) -> None:
    async def flood(client_id: int) -> None:
        client = await RawClient.connect(arena.gw.port, client_id=client_id)
        try:
            await client.expect(lambda m: m[0] == "9", 3.0)
            padding = "x" * size
            for number in range(messages):
                client.send_bytes(encode([49, 1, f"{number}{padding}"]))
                await client.expect(lambda m: m[0] == "49", 5.0)
            session = arena.gw.session(client_id)
            assert session is not None and session.received.bytes <= BUDGET
        finally:
            await client.close()

    async def scenario() -> None:
        ids = [arena.client_id() for _ in range(clients)]
        await asyncio.gather(*(flood(cid) for cid in ids))
        for cid in ids:
            while cid in arena.gw.clients:
                await asyncio.sleep(0.005)

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        arena.run(scenario(), timeout=60)
        assert arena.gw.received.bytes <= BUDGET
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arena.frames_sent += clients * (messages + 1)
    PEAKS.append(peak - base)
    RETAINED.append(current - base)
    # the gateway-wide log and the departed logs share messages: both fit the budget
    assert current - base < 2 * BUDGET + 512 * 1024, f"{(current - base) / 2**20:.1f} MiB"
    assert arena.run(arena.served())
