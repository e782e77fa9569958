"""Hostile clients against the simulated gateway: any request, framing attacks, floods,
slow, silent and non-reading clients (issue 18).

The well-behaved ib_async client (client 1, see :class:`sim.hostile.Arena`)
must be answered and keep receiving quotes after every example; no request
may crash a handler (a 322 other than TWS's duplicate-ticker answer); an
unreadable request gets 320 and the connection is closed; the message logs
stay within their byte budget.

``FUZZ_PROFILE=deep`` runs many more examples.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim.conftest import RawClient
from sim.hostile import Arena, crashes, encode, exchange, request_templates

from ibconn.sim import SimConfig
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS
from ibconn.sim.protocol.ids import KNOWN_REQUEST_IDS, In

DEEP = os.environ.get("FUZZ_PROFILE", "") == "deep"
PROFILE = settings(
    max_examples=2000 if DEEP else 80,
    deadline=None,
    derandomize=not DEEP,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LOG_BUDGET = 1024 * 1024
MAX_MESSAGE = 64 * 1024

FIELD_TEXT = st.one_of(
    st.sampled_from(
        ["", "0", "1", "-1", "2", "3", "AAPL", "STK", "SMART", "USD", "1e307", "inf", "nan",
         "Infinite", "2147483648", "1" + "0" * 30, "abc", "9" * 5000, "BUY", "LMT", "TRADES",
         "1 D", "1 min", "20240101 00:00:00", "DU0000001", "All", "NetLiquidation"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(repr),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=10),
)  # fmt: skip
# reqGlobalCancel is left out: from any client it cancels every client's orders, in TWS too.
EXCLUDED = {int(In.START_API), int(In.REQ_GLOBAL_CANCEL)}
MESSAGE_IDS = st.one_of(
    st.sampled_from(sorted(int(i) for i in KNOWN_REQUEST_IDS if i not in EXCLUDED)),
    st.integers(min_value=-5, max_value=300).filter(lambda i: i not in EXCLUDED),
)
RANDOM_REQUESTS = st.tuples(MESSAGE_IDS, st.lists(FIELD_TEXT, max_size=40)).map(
    lambda request: [str(request[0]), *request[1]]
)


@st.composite
def mutated_requests(draw: st.DrawFn) -> list[str]:
    """A valid request of some kind with a few fields replaced, appended or cut off."""
    fields = list(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(0, 3))):
        fields[draw(st.integers(1, max(1, len(fields) - 1))) % len(fields)] = draw(FIELD_TEXT)
    if draw(st.booleans()):
        fields = fields[: draw(st.integers(1, len(fields)))]
    fields += draw(st.lists(FIELD_TEXT, max_size=3))
    return fields


TEMPLATES = request_templates()
REQUESTS = st.one_of(mutated_requests(), RANDOM_REQUESTS)


@pytest.fixture(scope="module")
def arena() -> Iterator[Arena]:
    config = SimConfig(
        tick_rate=20,
        fill_delay=0.0,
        send_farm_notices=False,
        handshake_timeout=0.2,
        message_log_bytes=LOG_BUDGET,
        max_message_size=MAX_MESSAGE,
        rate_limit=50,
        flood_disconnect_rate=100,
    )
    hostile = Arena(config).start()
    try:
        yield hostile
        hostile.run(hostile.fill_resting())
    finally:
        hostile.stop()
    print(
        f"\nsim-hostile frames: frames={hostile.frames_sent} "
        f"served={hostile.served_checks}/{hostile.checks}"
    )


def check(arena: Arena, messages: list[list[str]], closed: bool) -> None:
    errors = [m for m in messages if m[0] == "4" and len(m) > 3]
    codes = [int(m[3]) for m in errors]
    assert not crashes(messages), crashes(messages)
    if closed:
        assert {320, 100, 326} & set(codes), messages[-3:]
    assert arena.gw.received.bytes <= LOG_BUDGET
    assert arena.run(arena.served())


@PROFILE
@given(requests=st.lists(REQUESTS, min_size=1, max_size=4))
def test_generated_requests_of_every_kind_never_crash_a_handler(
    arena: Arena, requests: list[list[str]]
) -> None:
    frames = [encode(fields) for fields in requests]
    messages, closed = arena.run(exchange(arena.gw.port, arena.client_id(), frames))
    arena.frames_sent += len(frames) + 1
    check(arena, messages, closed)


ATTACKS = st.one_of(
    st.just(struct.pack(">I", 0)),  # zero length
    st.integers(MAX_MESSAGE + 1, 2**32 - 1).map(lambda n: struct.pack(">I", n) + b"x" * 16),
    st.binary(min_size=1, max_size=200).map(lambda b: struct.pack(">I", len(b)) + b),  # any bytes
    st.binary(min_size=1, max_size=64).map(lambda b: struct.pack(">I", len(b)) + b"\xff" + b),
    st.just(encode(["abc", "1"])),  # non-numeric message id
    st.just(encode(["71", "2", "1", ""])),  # a second startApi
)


@PROFILE
@given(attack=ATTACKS)
def test_framing_attacks_are_answered_or_dropped_alone(arena: Arena, attack: bytes) -> None:
    messages, closed = arena.run(exchange(arena.gw.port, arena.client_id(), [attack]))
    arena.frames_sent += 2
    check(arena, messages, closed)


@settings(PROFILE, max_examples=PROFILE.max_examples // 3)
@given(
    prefix=st.binary(max_size=300),
    handshake=st.booleans(),
    client_id=st.sampled_from([None, Arena.GOOD_CLIENT, -1, 2**31, 0]),
)
def test_garbage_before_or_during_the_handshake_and_stolen_client_ids(
    arena: Arena, prefix: bytes, handshake: bool, client_id: int | None
) -> None:
    async def attack() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", arena.gw.port)
        client = RawClient(reader, writer)
        try:
            if handshake:
                writer.write(b"API\0" + struct.pack(">I", 9) + b"v157..178")
                await client.read_message(2.0)
                if client_id is not None:
                    client.send(71, 2, client_id, "")
            writer.write(prefix)
            if not handshake or client_id is None:
                # garbage instead of a handshake, or no startApi: closed within the timeout
                assert await client.closed(3.0)
            else:  # a started session (or a refused client id) keeps the others served
                assert await arena.served()
        finally:
            await client.close()

    arena.run(attack())
    arena.frames_sent += 2
    assert arena.gw.session(Arena.GOOD_CLIENT) is not None
    assert arena.run(arena.served())


def test_a_flood_is_cut_off_without_starving_the_good_client(arena: Arena) -> None:
    async def flood() -> bool:
        client = await RawClient.connect(arena.gw.port, client_id=arena.client_id())
        try:
            client.send_bytes(encode([49, 1]) * 150)
            await client.error(100, 3.0)
            return await client.closed(3.0)
        finally:
            await client.close()

    assert arena.run(flood())
    arena.frames_sent += 151
    assert arena.run(arena.served())


def test_slow_silent_and_non_reading_clients_do_not_hold_up_the_good_client(arena: Arena) -> None:
    async def scenario() -> None:
        # slow: a valid request one byte at a time
        slow = await RawClient.connect(arena.gw.port, client_id=arena.client_id())
        # silent: handshake only, then nothing (closed after handshake_timeout)
        silent = await RawClient.connect(arena.gw.port, client_id=None)
        # non-reading: subscribes to every instrument and never reads a byte
        deaf = await RawClient.connect(arena.gw.port, client_id=arena.client_id())
        for req_id, inst in enumerate(DEFAULT_INSTRUMENTS, start=1):
            contract = [inst.con_id, "", "", "", 0, "", "", "SMART", "", "", "", ""]
            deaf.send(1, 11, req_id, *contract, 0, "", 0, 0, "")
        try:
            data = encode([49, 1])
            for byte in data:
                slow.send_bytes(bytes([byte]))
                await asyncio.sleep(0.002)
                assert await arena.served(3.0)
            await slow.expect(lambda m: m[0] == "49", 3.0)
            assert await silent.closed(3.0)
            for _ in range(5):
                assert await arena.served(3.0)
        finally:
            for client in (slow, silent, deaf):
                await client.close()

    arena.run(scenario(), timeout=60)
    arena.frames_sent += 6


def test_the_well_behaved_client_was_served_every_time(arena: Arena) -> None:
    assert arena.checks > 0
    assert arena.served_checks == arena.checks
