"""ibconn's receive path against ib_async's own, byte for byte.

One byte stream is recorded from the simulated gateway (handshake,
managedAccounts, nextValidId, farm notices, errors, contract details, quotes,
tick-by-tick, blasts, historical bars, orders and executions), a few crafted
messages are added (non-UTF-8 bytes, non-ASCII text, a missing final NUL, an
empty message), and then the same bytes are fed, cut in every kind of way,
into two ``ib_async`` clients with recording wrappers: one with its own
``_onSocketHasData``, one with :class:`ibconn.wire.receive.FastReceiver`. Every
decoded field list, every wrapper call, the counters and the unread bytes
must be identical. An ``ib_async`` upgrade that changes its receive path
fails here, and so does a pinned-version check that lets an unknown version
through.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Iterator
from datetime import UTC
from itertools import pairwise
from typing import Any

import ib_async
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ib_async import IB, LimitOrder, MarketOrder, Stock
from ib_async.client import Client

from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.wire import receive
from ibconn.wire.receive import (
    FastReceiver,
    fast_receive_installed,
    fast_receive_supported,
    install_fast_receive,
    missing_client_fields,
    uninstall_fast_receive,
)

pytestmark = pytest.mark.timeout(60)

_LEN = struct.Struct(">I")


# -- the recorded stream ---------------------------------------------------------------


async def _record() -> bytes:
    """Everything an ib_async client received in one varied session with the sim."""
    chunks: list[bytes] = []
    config = SimConfig(tick_rate=0, fill_delay=0.0)
    async with SimulatedGateway(port=0, config=config) as gw:
        ib = IB()
        ib.client.conn.hasData += lambda data: chunks.append(bytes(data))
        await ib.connectAsync(gw.host, gw.port, clientId=7, timeout=5)
        aapl = Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(aapl)
        await ib.reqContractDetailsAsync(Stock("NOPE", "SMART", "USD"))  # error 200
        ib.reqMarketDataType(1)
        ib.reqMktData(aapl)
        ib.reqTickByTickData(aapl, "AllLast")
        ib.reqTickByTickData(aapl, "BidAsk")
        ib.reqTickByTickData(aapl, "MidPoint")
        await asyncio.sleep(0.05)
        gw.market.step("AAPL", count=20)
        await asyncio.sleep(0.05)
        await gw.blast("AAPL", 200, batch=50)
        await ib.reqHistoricalDataAsync(aapl, "", "7200 S", "1 min", "TRADES", True)
        trade = ib.placeOrder(aapl, MarketOrder("BUY", 100))
        for _ in range(200):
            if trade.isDone():
                break
            await asyncio.sleep(0.01)
        resting = ib.placeOrder(aapl, LimitOrder("BUY", 100, 1.0))
        await asyncio.sleep(0.05)
        ib.cancelOrder(resting.order)
        await ib.reqCurrentTimeAsync()
        await asyncio.sleep(0.05)
        ib.disconnect()
    return b"".join(chunks)


def _frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


# Messages a real TWS could send that exercise the decoding corner cases.
CRAFTED = b"".join(
    [
        _frame("4\x002\x00-1\x002104\x00Verbindung OK: usfarm — ünïcödé\x00\x00".encode()),
        _frame(b"4\x002\x00-1\x002106\x00bad utf-8 \xff\xfe here\x00\x00"),
        _frame(b"4\x002\x00-1\x002158\x00no final NUL\x00\x00{}"),  # ib_async drops the last field
        _frame(b""),  # empty message: the decoder logs and goes on
        _frame(b"46\x006\x001\x0045\x00" + b"7" * 300 + b"\x00"),  # prefix bytes >= 0x80
        _frame(b"49\x001\x001700000000\x00"),
    ]
)


@pytest.fixture(scope="module")
def stream() -> bytes:
    recorded = asyncio.run(_record())
    assert _LEN.unpack_from(recorded)[0] < 40  # starts with the handshake reply
    return recorded + CRAFTED


@pytest.fixture(autouse=True)
def _quiet_decoder() -> Iterator[None]:
    """The crafted messages make ib_async's decoder log tracebacks (in both paths)."""
    decoder_log = logging.getLogger("ib_async.Decoder")
    level = decoder_log.level
    decoder_log.setLevel(logging.CRITICAL)
    yield
    decoder_log.setLevel(level)


def boundaries(data: bytes) -> list[int]:
    """Offsets where messages start (and the end)."""
    out, pos = [], 0
    while pos < len(data):
        out.append(pos)
        pos += 4 + _LEN.unpack_from(data, pos)[0]
    assert pos == len(data)
    return [*out, pos]


def test_the_stream_covers_the_message_kinds(stream: bytes) -> None:
    ids = set()
    starts = boundaries(stream)
    for a, b in pairwise(starts):
        ids.add(stream[a + 4 : b].split(b"\0", 1)[0])
    wanted = {
        b"1", b"2", b"3", b"4", b"5", b"6", b"9", b"10", b"11", b"15", b"17",
        b"46", b"49", b"52", b"59", b"99",
    }  # fmt: skip
    assert wanted <= ids
    assert not stream.isascii()  # the slow (per-message) decoding is exercised too


# -- two clients, one per path -----------------------------------------------------------


class RecordingWrapper:
    """Stands in for ib_async's Wrapper: records every call with the client's counters."""

    defaultTimezone = UTC

    class ib:  # the decoder reads wrapper.ib.TimezoneTWS
        TimezoneTWS = None

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.client: Any = None
        self.hooks: dict[str, Callable[..., None]] = {}

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__"):
            raise AttributeError(name)

        def record(*args: Any) -> None:
            client = self.client
            state = (client._numMsgRecv, client._numBytesRecv) if client is not None else None
            if name == "tcpDataProcessed":
                state = (*state, bytes(unread(client)))  # type: ignore[misc]
            self.calls.append(f"{name}{args!r}@{state}")
            hook = self.hooks.get(name)
            if hook is not None:
                hook(*args)

        return record


def unread(client: Any) -> bytes:
    """The bytes a client holds for later, whichever path it uses."""
    receiver = getattr(client, "_ibconn_receiver", None)
    data = client._data
    if receiver is not None and data is receiver._cur:
        return bytes(data[receiver._pos :])
    return bytes(data)


def make_client(fast: bool) -> tuple[Client, RecordingWrapper, list[str]]:
    wrapper = RecordingWrapper()
    client = Client(wrapper)
    wrapper.client = client
    log: list[str] = wrapper.calls
    interpret = client.decoder.interpret

    def recording_interpret(fields: list[str]) -> None:
        log.append(f"fields{fields!r}#{client._numMsgRecv}")
        interpret(fields)

    client.decoder.interpret = recording_interpret  # type: ignore[method-assign]
    client.startApi = lambda: log.append(f"startApi@{client.connState}")  # type: ignore[method-assign]
    client.apiStart += lambda: log.append(f"apiStart ready={client.isReady()}")
    client.apiError += lambda msg: log.append(f"apiError {msg}")
    if fast:
        receiver = install_fast_receive(client)
        assert receiver is not None
        # ib_async has no frame limit: compare framing without ibconn's (tested on its own)
        receiver.max_frame = 2**32
    return client, wrapper, log


def feed(client: Client, chunks: Iterator[bytes]) -> None:
    for chunk in chunks:
        client.conn.hasData.emit(chunk)


def run_both(
    chunks: Callable[[], Iterator[bytes]],
    setup: Callable[[Client, RecordingWrapper], None] | None = None,
) -> list[str]:
    results = []
    for fast in (False, True):
        client, wrapper, log = make_client(fast)
        if setup is not None:
            setup(client, wrapper)
        feed(client, chunks())
        log.append(
            f"end recv={client._numMsgRecv} bytes={client._numBytesRecv} "
            f"version={client._serverVersion} ready={client._apiReady} "
            f"accounts={client._accounts} reqid={client._reqIdSeq} unread={unread(client)!r}"
        )
        results.append(log)
    slow_log, fast_log = results
    assert len(fast_log) == len(slow_log)
    for i, (a, b) in enumerate(zip(slow_log, fast_log, strict=True)):
        assert a == b, f"first difference at entry {i}"
    return slow_log


def sizes(data: bytes, cut: Callable[[int], int]) -> Iterator[bytes]:
    pos = 0
    while pos < len(data):
        step = max(1, cut(pos))
        yield data[pos : pos + step]
        pos += step


# -- cuts --------------------------------------------------------------------------------


def test_one_big_chunk(stream: bytes) -> None:
    log = run_both(lambda: iter([stream]))
    # every message but the handshake reply reaches the decoder
    assert sum(entry.startswith("fields") for entry in log) == len(boundaries(stream)) - 2
    assert any(entry.startswith("connectAck") for entry in log)
    assert any(entry.startswith("apiStart ready=True") for entry in log)


def test_one_byte_chunks(stream: bytes) -> None:
    run_both(lambda: sizes(stream, lambda _: 1))


def test_cut_exactly_at_message_boundaries(stream: bytes) -> None:
    starts = boundaries(stream)
    run_both(lambda: (stream[a:b] for a, b in pairwise(starts)))


@pytest.mark.parametrize("inside", [1, 2, 3, 4, 5])
def test_cut_inside_every_length_prefix(stream: bytes, inside: int) -> None:
    """Each cut falls ``inside`` bytes into a message: within its prefix (1-3), right
    after it (4) or one byte into the payload (5)."""
    starts = boundaries(stream)
    cuts = sorted({0, *(s + inside for s in starts[:-1] if s + inside < len(stream)), len(stream)})
    run_both(lambda: (stream[a:b] for a, b in pairwise(cuts)))


def test_two_messages_per_chunk_offset_by_one(stream: bytes) -> None:
    starts = boundaries(stream)
    cuts = sorted({0, *(s + 1 for s in starts[1:-1:2]), len(stream)})
    run_both(lambda: (stream[a:b] for a, b in pairwise(cuts)))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=64))
def test_random_chunk_sizes(stream: bytes, steps: list[int]) -> None:
    run_both(lambda: sizes(stream, lambda pos: steps[pos % len(steps)]))


def test_debug_logging_is_the_same(stream: bytes, caplog: pytest.LogCaptureFixture) -> None:
    records: list[list[str]] = []
    for fast in (False, True):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="ib_async.client"):
            client, _, _ = make_client(fast)
            feed(client, sizes(stream, lambda pos: 1 + pos % 777))
        records.append([f"{r.levelname} {r.getMessage()}" for r in caplog.records])
    assert records[0] == records[1]
    assert sum(line.startswith("DEBUG <<< ") for line in records[0]) == len(boundaries(stream)) - 1


# -- handlers that reset the client or feed it again ---------------------------------------


def test_a_reset_inside_a_handler_drops_the_rest_of_that_read(stream: bytes) -> None:
    def setup(client: Client, wrapper: RecordingWrapper) -> None:
        seen = [0]

        def on_tick(*_: Any) -> None:
            seen[0] += 1
            if seen[0] in (5, 60):
                client.reset()

        wrapper.hooks["priceSizeTick"] = on_tick

    log = run_both(lambda: sizes(stream, lambda pos: 2000 + pos % 1500), setup)
    assert any("fields" in entry for entry in log)


def test_a_nested_read_inside_a_handler_continues_in_order(stream: bytes) -> None:
    extra = CRAFTED

    def setup(client: Client, wrapper: RecordingWrapper) -> None:
        done = [False]

        def on_tick(*_: Any) -> None:
            if not done[0]:
                done[0] = True
                client.conn.hasData.emit(extra[:7])  # a nested read, cut inside a prefix
                client.conn.hasData.emit(extra[7:])

        wrapper.hooks["tickString"] = on_tick

    run_both(lambda: sizes(stream, lambda pos: 4096), setup)


def test_a_server_version_below_the_minimum_disconnects_the_same(stream: bytes) -> None:
    old = _frame(b"150\x0020240101 00:00:00 UTC\x00") + stream[boundaries(stream)[1] :]
    log = run_both(lambda: sizes(old, lambda _: 100))
    assert any("TWS/gateway version must be >= 972" in entry for entry in log)


def test_a_handler_that_raises_leaves_the_same_state(stream: bytes) -> None:
    """Bad fields while not ready make the snoop raise out of the read; both keep going."""
    bad = _frame(b"15\x001\x00") + _frame(b"9\x001\x0042\x00")  # managedAccounts lacks a field

    def chunks() -> Iterator[bytes]:
        starts = boundaries(stream)
        yield stream[: starts[1]]  # the handshake
        yield bad
        yield stream[starts[1] :]

    results = []
    for fast in (False, True):
        client, _, log = make_client(fast)
        handler = client._ibconn_receiver.data_received if fast else client._onSocketHasData  # type: ignore[attr-defined]
        for chunk in chunks():
            try:
                handler(chunk)
            except Exception as exc:  # eventkit would log it; here it is recorded
                log.append(f"raised {exc!r}")
        log.append(f"end {client._numMsgRecv} {unread(client)!r} {client._apiReady}")
        results.append(log)
    assert any(entry.startswith("raised ValueError") for entry in results[0])
    assert results[0] == results[1]


# -- installing ------------------------------------------------------------------------------


def test_install_replaces_the_handler_once_and_uninstall_restores_it() -> None:
    ib = IB()
    has_data = ib.client.conn.hasData
    listeners = len(has_data)
    receiver = install_fast_receive(ib)
    assert isinstance(receiver, FastReceiver)
    assert receiver.client is ib.client
    assert fast_receive_installed(ib)
    assert install_fast_receive(ib) is receiver  # idempotent
    assert len(has_data) == listeners
    has_data.emit(_frame(b"178\x00now\x00")[:3])  # a partial read stays unread
    assert uninstall_fast_receive(ib)
    assert not fast_receive_installed(ib)
    assert len(has_data) == listeners
    assert ib.client._data == _frame(b"178\x00now\x00")[:3]
    assert not uninstall_fast_receive(ib)


def test_an_unsupported_ib_async_version_keeps_ib_asyncs_path(
    monkeypatch: pytest.MonkeyPatch, log_lines: list[str]
) -> None:
    assert fast_receive_supported()  # the pinned version is installed
    assert fast_receive_supported("2.1.7")
    assert not fast_receive_supported("2.2.0")
    assert not fast_receive_supported("3.0")
    monkeypatch.setattr(receive.ib_async, "__version__", "2.2.0")
    ib = IB()
    assert install_fast_receive(ib) is None
    assert not fast_receive_installed(ib)
    assert any("ib_async 2.2.0 is not the 2.1.x release" in line for line in log_lines)
    assert ib_async.__version__ == "2.2.0"  # (the monkeypatch is undone after the test)


def test_a_client_without_the_expected_handler_is_left_alone(log_lines: list[str]) -> None:
    ib = IB()
    ib.client.conn.hasData -= ib.client._onSocketHasData
    assert install_fast_receive(ib) is None
    assert not fast_receive_installed(ib)
    assert len(ib.client.conn.hasData) == 0
    assert any("not connected as expected" in line for line in log_lines)


@pytest.mark.parametrize("field", ["_data", "_apiReady", "_tcpDataProcessed"])
def test_a_client_without_a_field_the_receive_path_uses_keeps_ib_asyncs_path(
    field: str, log_lines: list[str]
) -> None:
    ib = IB()
    has_data = ib.client.conn.hasData
    listeners = len(has_data)
    assert missing_client_fields(ib.client) == []
    delattr(ib.client, field)
    assert missing_client_fields(ib.client) == [field]
    assert install_fast_receive(ib) is None
    assert not fast_receive_installed(ib)
    assert len(has_data) == listeners  # ib_async's own handler is still the listener
    assert any(f"lacks {field}, which ibconn's receive path uses" in line for line in log_lines)


# -- over real TCP, across reconnects ------------------------------------------------------


async def test_every_update_arrives_in_order_across_reconnects() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(tick_rate=0)) as gw:
        ib = IB()
        receiver = install_fast_receive(ib)
        assert receiver is not None
        aapl = Stock("AAPL", "SMART", "USD")
        for session in range(2):
            await ib.connectAsync(gw.host, gw.port, clientId=3, timeout=5)
            await ib.qualifyContractsAsync(aapl)
            seqs: list[float] = []

            def collect(tickers: Any, seqs: list[float] = seqs) -> None:
                for ticker in tickers:
                    seqs.extend(tick.size for tick in ticker.ticks)

            ib.pendingTickersEvent += collect
            ib.reqMktData(aapl)
            await asyncio.sleep(0.05)
            seqs.clear()  # the snapshot's sizes are not sequence numbers
            await gw.blast("AAPL", 20_000)
            for _ in range(200):
                if seqs and seqs[-1] == 20_000:
                    break
                await asyncio.sleep(0.01)
            ib.pendingTickersEvent -= collect
            # bid and ask ticks carry the sequence number; last ticks (every third) too
            assert seqs == [float(n) for n in range(1, 20_001)], f"session {session}"
            assert ib.client._ibconn_receiver is receiver  # type: ignore[attr-defined]
            ib.disconnect()
            await asyncio.sleep(0.05)
            assert ib.client._data == b""


# -- yielding to waiters ---------------------------------------------------------------------


def _decoded(log: list[str]) -> list[str]:
    """What was decoded and dispatched, without the per-read hooks and counters."""
    return [
        entry.split("@", 1)[0].split("#", 1)[0]
        for entry in log
        if not entry.startswith(("tcpDataArrived", "tcpDataProcessed"))
    ]


def _slow_reference(chunks: list[bytes]) -> list[str]:
    client, _, log = make_client(fast=False)
    feed(client, iter(chunks))
    return _decoded(log)


def _yield_once(receiver: FastReceiver) -> Callable[..., None]:
    """A wrapper hook that asks the receiver to yield the first time it is called."""
    calls = [0]

    def hook(*_: Any) -> None:
        calls[0] += 1
        if calls[0] == 1:
            receiver.request_yield()

    return hook


async def _until_not_paused(receiver: FastReceiver) -> None:
    for _ in range(100):
        if not receiver.paused:
            return
        await asyncio.sleep(0)
    raise AssertionError("the cut read was never continued")


async def test_a_yield_resumes_the_waiter_before_the_rest_of_the_read(stream: bytes) -> None:
    client, wrapper, log = make_client(fast=True)
    receiver: FastReceiver = client._ibconn_receiver  # type: ignore[attr-defined]
    waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    ticks = [0]

    def on_tick(*_: Any) -> None:
        ticks[0] += 1
        if ticks[0] == 3:
            waiter.set_result(client._numMsgRecv)
            receive.yield_to_waiters(client)

    wrapper.hooks["priceSizeTick"] = on_tick
    client.conn.hasData.emit(stream)  # one read holding every message
    assert receiver.paused
    at_yield = await waiter
    assert client._numMsgRecv == at_yield  # resumed before one more message was decoded
    assert log[-1].startswith("tcpDataProcessed")  # the slice ended like a read
    await _until_not_paused(receiver)
    assert unread(client) == b""
    assert _decoded(log) == _slow_reference([stream])  # nothing lost, nothing reordered
    assert sum(entry.startswith("tcpDataProcessed") for entry in log) == 2


async def test_data_that_arrives_while_paused_is_decoded_after_the_unread_bytes(
    stream: bytes,
) -> None:
    starts = boundaries(stream)
    first, second = stream[: starts[len(starts) // 2] + 3], stream[starts[len(starts) // 2] + 3 :]
    client, wrapper, log = make_client(fast=True)
    receiver: FastReceiver = client._ibconn_receiver  # type: ignore[attr-defined]
    wrapper.hooks["priceSizeTick"] = _yield_once(receiver)
    client.conn.hasData.emit(first)
    assert receiver.paused
    decoded = client._numMsgRecv
    client.conn.hasData.emit(second)  # before the continuation ran: queued behind the rest
    assert receiver.paused and client._numMsgRecv == decoded
    await _until_not_paused(receiver)
    assert _decoded(log) == _slow_reference([first, second])
    assert unread(client) == b""


async def test_a_reset_while_paused_drops_the_unread_bytes(stream: bytes) -> None:
    client, wrapper, log = make_client(fast=True)
    receiver: FastReceiver = client._ibconn_receiver  # type: ignore[attr-defined]
    wrapper.hooks["priceSizeTick"] = lambda *_: receiver.request_yield()
    client.conn.hasData.emit(stream)
    decoded = sum(entry.startswith("fields") for entry in log)
    assert receiver.paused and unread(client)
    client.reset()  # what ib_async does on a disconnect
    await _until_not_paused(receiver)
    assert unread(client) == b""
    assert sum(entry.startswith("fields") for entry in log) == decoded


async def test_uninstall_while_paused_hands_the_unread_bytes_to_ib_async(stream: bytes) -> None:
    client, wrapper, log = make_client(fast=True)
    receiver: FastReceiver = client._ibconn_receiver  # type: ignore[attr-defined]
    wrapper.hooks["priceSizeTick"] = _yield_once(receiver)
    starts = boundaries(stream)
    last = stream[starts[-2] :]
    client.conn.hasData.emit(stream[: starts[-2]])
    assert receiver.paused
    assert uninstall_fast_receive(client)
    assert not receiver.paused
    client.conn.hasData.emit(last)  # ib_async's own path decodes the held bytes first
    await asyncio.sleep(0)
    assert _decoded(log) == _slow_reference([stream])


def test_a_yield_outside_a_read_does_nothing(stream: bytes) -> None:
    client, _, log = make_client(fast=True)
    receive.yield_to_waiters(client)  # no read in progress
    client.conn.hasData.emit(stream)  # (no loop needed: nothing is cut)
    assert not client._ibconn_receiver.paused  # type: ignore[attr-defined]
    assert _decoded(log) == _slow_reference([stream])
    receive.yield_to_waiters(IB())  # a client without ibconn's path: no-op


async def test_a_new_connection_after_a_reset_while_paused_is_decoded(stream: bytes) -> None:
    """A reset drops the unread bytes; what the next connection sends is decoded, the
    handshake included, even though the continuation of the old read was still queued."""
    client, wrapper, log = make_client(fast=True)
    receiver: FastReceiver = client._ibconn_receiver  # type: ignore[attr-defined]
    wrapper.hooks["priceSizeTick"] = _yield_once(receiver)
    client.conn.hasData.emit(stream)
    assert receiver.paused
    client.reset()
    del log[:]
    client.conn.hasData.emit(stream)  # a new connection: handshake first
    await _until_not_paused(receiver)
    assert client._serverVersion == 178 and client._apiReady
    assert _decoded(log) == _slow_reference([stream])
