"""Helpers for the simulated gateway's tests: a raw protocol client and waiting tools."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from ib_async import IB

from ibconn.sim import SimConfig, SimulatedGateway
from ibconn.sim.broker.broker import Broker
from ibconn.sim.broker.records import OrderRequest, SimOrder


def pytest_configure(config: pytest.Config) -> None:
    # The plugin is normally loaded through its pytest11 entry point; load it
    # here too when the installed metadata predates that entry point.
    if not config.pluginmanager.has_plugin("ibconn") and not config.pluginmanager.has_plugin(
        "ibconn.sim.pytest_plugin"
    ):
        config.pluginmanager.import_plugin("ibconn.sim.pytest_plugin")


async def wait_until(predicate: Callable[[], Any], timeout: float = 3.0, what: str = "") -> None:
    """Poll ``predicate`` every 5 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


async def connect(ib: IB, port: int, client_id: int = 1) -> IB:
    """``ib`` connected to the gateway on ``port`` (5 s timeout)."""
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=5)
    return ib


def errors_of(ib: IB) -> list[tuple[int, int, str]]:
    """A list that collects ``(req_id, code, text)`` of every error ``ib`` reports from now on."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: seen.append((req_id, code, text))
    return seen


def limit_order(broker: Broker, **kw: Any) -> SimOrder:
    """A GTC limit order to buy 100 AAPL at 185.5 (ref-7) placed by client 3; ``kw`` overrides."""
    fields: dict[str, Any] = {
        "order_id": 7,
        "action": "BUY",
        "total_quantity": 100,
        "order_type": "LMT",
        "symbol": "AAPL",
        "sec_type": "STK",
        "exchange": "SMART",
        "currency": "USD",
        "lmt_price": 185.5,
        "order_ref": "ref-7",
        "tif": "GTC",
    }
    fields.update(kw)
    order = broker.place_order(3, OrderRequest(**fields))
    assert order is not None
    return order


class RawClient:
    """A minimal API client speaking the wire protocol directly (for protocol-level tests)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.messages: list[list[str]] = []
        self.server_version = 0
        self._buffer = b""

    @classmethod
    async def connect(
        cls,
        port: int,
        client_id: int | None = 1,
        versions: str = "v157..178",
        host: str = "127.0.0.1",
    ) -> RawClient:
        """Connect, handshake and (unless ``client_id`` is None) send startApi."""
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        payload = versions.encode()
        writer.write(b"API\0" + struct.pack(">I", len(payload)) + payload)
        reply = await client.read_message(2.0)
        assert reply is not None and len(reply) == 2, reply
        client.server_version = int(reply[0])
        if client_id is not None:
            client.send(71, 2, client_id, "")
        return client

    def send(self, *fields: object) -> None:
        payload = b"".join(str(f).encode() + b"\0" for f in fields)
        self.writer.write(struct.pack(">I", len(payload)) + payload)

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_message(self, timeout: float = 2.0) -> list[str] | None:
        """The next message, or None on EOF/timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= 4:
                (size,) = struct.unpack(">I", self._buffer[:4])
                if len(self._buffer) >= 4 + size:
                    payload = self._buffer[4 : 4 + size]
                    self._buffer = self._buffer[4 + size :]
                    fields = payload.decode().split("\0")[:-1]
                    self.messages.append(fields)
                    return fields
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except (TimeoutError, ConnectionError):
                return None
            if not chunk:
                return None
            self._buffer += chunk

    async def expect(
        self, predicate: Callable[[list[str]], bool], timeout: float = 2.0
    ) -> list[str]:
        """Read until a message matches ``predicate``; fail on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.read_message(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise AssertionError(f"no matching message; got {self.messages[-5:]}")
            if predicate(message):
                return message

    async def error(self, code: int, timeout: float = 2.0) -> list[str]:
        """Wait for error message 4 with ``code``."""
        return await self.expect(lambda m: m[0] == "4" and m[3] == str(code), timeout)

    async def closed(self, timeout: float = 2.0) -> bool:
        """Read until EOF; True if the server closed within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = await asyncio.wait_for(
                    self.reader.read(65536), max(0.01, deadline - time.monotonic())
                )
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not chunk:
                return True
            self._buffer += chunk
        return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@pytest.fixture
def sim_config() -> SimConfig:
    """Settings for the ``gw`` fixture (override per module)."""
    return SimConfig()


@pytest.fixture
async def gw(sim_config: SimConfig) -> AsyncIterator[SimulatedGateway]:
    async with SimulatedGateway(port=0, config=sim_config) as gateway:
        yield gateway


@pytest.fixture
async def raw_clients() -> AsyncIterator[list[RawClient]]:
    """Raw clients to close after the test (append yours)."""
    clients: list[RawClient] = []
    yield clients
    for client in clients:
        await client.close()


@pytest.fixture
def ibs() -> Iterator[Callable[[], IB]]:
    """Make ib_async IB objects that are disconnected after the test."""
    made: list[IB] = []

    def make() -> IB:
        ib = IB()
        made.append(ib)
        return ib

    yield make
    for ib in made:
        ib.disconnect()
