"""A hostile gateway: after the handshake, generated garbage for every message id the
client decodes, framing attacks, floods, slow and silent peers.

The simulated gateway does the handshake and the sync; then its session writes
whatever the strategies make straight onto the socket. After every example:
the supervisor is alive and connected again within a bound (no hang), nothing
unhandled reached the event loop, the known order holds no non-finite number,
and the process's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ib_async.decoder import Decoder

from ibconn.connection.session import ConnectionState
from ibconn.errors import IBConnError
from ibconn.wire.inbound import MAX_FRAME_BYTES

from .conftest import STATS, Rig

DECODED_IDS = sorted(Decoder(None, 178).handlers)
# Codes that legitimately steer the connection (redirect, farm loss, id in use): another test's job.
CONTROL_CODES = {"326", "502", "504", "1100", "1101", "1102", "1300", "2110"}
NUMBERS = st.sampled_from(
    ["nan", "inf", "-inf", "-1", "0", "1", "1e308", "-1e308", "1.7976931348623157E308",
     "99999999999999999999", "", "0.5", "NaN", "Infinity", "1_0", "٣", "0x10"]
)  # fmt: skip
FIELD = st.one_of(NUMBERS, st.text(max_size=12).map(lambda t: t.replace("\x00", "")))


def frame(fields: list[str]) -> bytes:
    body = "".join(f + "\x00" for f in fields).encode("utf-8", "backslashreplace")
    return struct.pack(">I", len(body)) + body


@st.composite
def messages(draw: Any) -> list[str]:
    msg_id = draw(st.sampled_from(DECODED_IDS))
    fields = [str(msg_id), *draw(st.lists(FIELD, max_size=40))]
    if msg_id == 4 and len(fields) > 3 and fields[3].strip() in CONTROL_CODES:
        fields[3] = "9999"
    return fields


ATTACKS = st.one_of(
    st.tuples(st.just("message"), st.lists(messages(), min_size=1, max_size=20)),
    st.tuples(st.just("raw"), st.binary(max_size=300)),
    st.tuples(st.just("flood"), messages(), st.integers(100, 3000)),
    st.tuples(st.just("slow"), messages(), st.integers(1, 7)),
    st.tuples(st.just("oversize"), st.integers(MAX_FRAME_BYTES + 1, 2**32 - 1)),
)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def known(rig: Rig) -> Any:
    return rig.call(lambda: rig.connector.place_limit_order("AAPL", 1, "BUY", 100.0))


async def _send(rig: Rig, attack: tuple[Any, ...]) -> None:
    session = rig.gw.session(1)
    if session is None:
        return
    kind = attack[0]
    if kind == "message":
        session.send_raw(b"".join(frame(m) for m in attack[1]), len(attack[1]))
    elif kind == "raw":
        session.send_raw(attack[1])
    elif kind == "flood":
        session.send_raw(frame(attack[1]) * attack[2], attack[2])
    elif kind == "slow":
        data = frame(attack[1])
        step = max(1, len(data) // attack[2])
        for start in range(0, len(data), step):
            session.send_raw(data[start : start + step], 0)
            await asyncio.sleep(0.001)
    elif kind == "oversize":
        session.send_raw(struct.pack(">I", attack[1]) + b"x" * 1024)
    await session.drain()


async def _settled(rig: Rig) -> bool:
    """Connected again (a fresh heartbeat answered) within the bound: no hang."""
    connector = rig.connector
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        try:
            await asyncio.wait_for(connector.wait_connected(5), 6)
            await asyncio.wait_for(connector.ib.reqCurrentTimeAsync(), 5)
        except (TimeoutError, ConnectionError, IBConnError):
            await asyncio.sleep(0.05)  # the loss is being handled: ask again
            continue
        return True
    return False


@pytest.fixture(autouse=True, scope="module")
def _quiet_decoder() -> Iterator[None]:
    """ib_async logs a traceback per malformed message; floods of them only slow the run."""
    decoder_log = logging.getLogger("ib_async.Decoder")
    level = decoder_log.level
    decoder_log.setLevel(logging.CRITICAL)
    yield
    decoder_log.setLevel(level)


@given(attack=ATTACKS)
def test_a_hostile_gateway_never_kills_or_hangs_the_supervisor(
    rig: Rig, known: Any, attack: tuple[Any, ...]
) -> None:
    STATS["hostile frames"]["tried"] += 1
    STATS["hostile frames"][attack[0]] += 1
    frames = {"message": lambda: len(attack[1]), "flood": lambda: attack[2]}.get(attack[0])
    STATS["hostile frames"]["frames"] += frames() if frames is not None else 1
    rig.run(_send(rig, attack))
    settled = rig.run(_settled(rig), timeout=60)
    alive = rig.connector.supervisor.running
    if not alive:
        STATS["hostile frames"]["supervisor_deaths"] += 1
    if not settled:
        STATS["hostile frames"]["hangs"] += 1
    assert alive, "the supervisor task ended"
    assert settled, f"not connected again after {attack[0]}"
    assert rig.loop_errors == [], rig.loop_errors[:3]
    snapshot = rig.call(lambda: rig.connector.get_order_status(known))
    assert math.isfinite(snapshot.filled) and math.isfinite(snapshot.remaining)
    assert snapshot.avg_fill_price is None or math.isfinite(snapshot.avg_fill_price)
    rss = _rss_mib()
    STATS["hostile frames"]["peak_rss_mib"] = max(STATS["hostile frames"]["peak_rss_mib"], int(rss))
    assert rss < 1024, f"resident memory reached {rss:.0f} MiB"


def test_each_class_of_garbage_was_alerted(rig: Rig, known: Any) -> None:
    """A frame of each class, then one alert per class (and the counters agree)."""
    inf_status = [
        "3",
        str(known.order_id),
        "Filled",
        "inf",
        "0",
        "nan",
        "0",
        "0",
        "0",
        "1",
        "",
        "0",
    ]
    attacks: list[tuple[Any, ...]] = [
        ("message", [inf_status]),
        ("message", [["3", "x"]]),
        ("oversize", 2**32 - 1),
    ]
    for attack in attacks:
        rig.run(_send(rig, attack))
        assert rig.run(_settled(rig), timeout=60)
    counts = rig.connector.supervisor.inbound_garbage
    assert {"impossible_number", "malformed", "frame_size"} <= set(counts), counts


async def _silence(rig: Rig) -> int:
    connector = rig.connector
    generation = connector.session.generation if connector.session else 0
    rig.gw.stall(1)  # a silent peer: nothing more arrives
    try:
        await asyncio.wait_for(_until_lost(rig), 10)
    finally:
        rig.gw.unstall(1)
    await asyncio.wait_for(connector.wait_connected(20), 25)
    return (connector.session.generation if connector.session else 0) - generation


async def _until_lost(rig: Rig) -> None:
    while rig.connector.state is ConnectionState.CONNECTED:
        await asyncio.sleep(0.01)


def test_a_silent_peer_is_noticed_and_left(rig: Rig) -> None:
    assert rig.run(_silence(rig), timeout=60) >= 1
