"""Tools for hostile-client tests of the simulated gateway: exact placeOrder frames.

:func:`place_order_fields` encodes an ib_async ``Order`` exactly as ib_async
would put it on the wire (through ib_async's own ``Client.placeOrder``, with
the socket replaced by a list), so that tests can send it, or a mutation of
it, from a raw socket.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ib_async import IB, Contract, ExecutionFilter, LimitOrder, Order, Stock, Ticker, Trade
from ib_async.client import Client
from ib_async.wrapper import Wrapper

from ibconn.sim import SimConfig, SimulatedGateway

from .conftest import RawClient

SERVER_VERSION = 178
T = TypeVar("T")


class _CapturingClient(Client):  # type: ignore[misc]
    """An ib_async client whose "socket" is a list of encoded messages."""

    def __init__(self) -> None:
        super().__init__(Wrapper(IB()))
        self._serverVersion = SERVER_VERSION
        self.sent: list[str] = []

    def isConnected(self) -> bool:
        return True

    def sendMsg(self, msg: str) -> None:
        self.sent.append(msg)


def place_order_fields(order_id: int, order: Order, contract: Contract | None = None) -> list[str]:
    """The fields of ib_async's placeOrder (3) for ``order`` (AAPL by default)."""
    client = _CapturingClient()
    client.placeOrder(order_id, contract or aapl_contract(), order)
    fields = client.sent[-1].split("\0")
    return fields[:-1] if fields and fields[-1] == "" else fields


def request_templates() -> list[list[str]]:
    """Valid requests of (almost) every kind the simulator serves, as ib_async encodes them."""
    contract = aapl_contract()
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("reqMktData", (1, contract, "233", False, False, [])),
        ("cancelMktData", (1,)),
        ("reqContractDetails", (2, contract)),
        ("reqHistoricalData", (3, contract, "", "1 D", "1 min", "TRADES", 1, 1, False, [])),
        ("cancelHistoricalData", (3,)),
        ("reqRealTimeBars", (4, contract, 5, "TRADES", True, [])),
        ("cancelRealTimeBars", (4,)),
        ("reqTickByTickData", (5, contract, "BidAsk", 0, False)),
        ("cancelTickByTickData", (5,)),
        ("reqHistoricalTicks", (6, contract, "20240101 00:00:00", "", 100, "TRADES", 1, False, [])),
        ("reqHeadTimeStamp", (7, contract, "TRADES", 1, 1)),
        ("reqMarketDataType", (3,)),
        ("reqPositions", ()),
        ("cancelPositions", ()),
        ("reqAccountSummary", (8, "All", "NetLiquidation,BuyingPower")),
        ("cancelAccountSummary", (8,)),
        ("reqAccountUpdates", (True, "DU0000001")),
        ("reqAccountUpdatesMulti", (9, "DU0000001", "", False)),
        ("cancelAccountUpdatesMulti", (9,)),
        ("reqPositionsMulti", (10, "DU0000001", "")),
        ("cancelPositionsMulti", (10,)),
        ("reqPnL", (11, "DU0000001", "")),
        ("cancelPnL", (11,)),
        ("reqPnLSingle", (12, "DU0000001", "", 265598)),
        ("cancelPnLSingle", (12,)),
        ("reqExecutions", (13, ExecutionFilter())),
        ("reqOpenOrders", ()),
        ("reqAllOpenOrders", ()),
        ("reqAutoOpenOrders", (True,)),
        ("reqCompletedOrders", (False,)),
        ("reqIds", (1,)),
        ("reqCurrentTime", ()),
        ("reqManagedAccts", ()),
        ("reqMarketRule", (26,)),
        ("cancelOrder", (5, "")),
    ]
    client = _CapturingClient()
    templates = []
    for name, args in calls:
        getattr(client, name)(*args)
        fields = client.sent[-1].split("\0")
        templates.append(fields[:-1] if fields and fields[-1] == "" else fields)
    return templates


def aapl_contract() -> Contract:
    """AAPL as the simulator knows it (conId included, so no qualification is needed)."""
    return Stock("AAPL", "SMART", "USD", conId=265598)


def encode(fields: list[Any]) -> bytes:
    """One length-prefixed frame of ``fields``."""
    payload = b"".join(str(f).encode("utf-8", "surrogatepass") + b"\0" for f in fields)
    return struct.pack(">I", len(payload)) + payload


def trailing_percent_index(fields: list[str]) -> int:
    """Where ib_async puts trailingPercent in a placeOrder (found by a marker value)."""
    marker = place_order_fields(1, Order(action="SELL", totalQuantity=1, orderType="TRAIL",
                                         trailingPercent=12.3456))  # fmt: skip
    return marker.index("12.3456")


# ---------------------------------------------------------------------------- the arena


class Arena:
    """A simulated gateway and a well-behaved ib_async client, on a loop in a thread.

    Property-based tests (synchronous, driven by hypothesis) run hostile
    coroutines on the arena's loop with :meth:`run`; :meth:`served` checks
    that the well-behaved client (client id 1) is still answered and still
    receives quotes; its resting buy limit order is :attr:`resting`.
    """

    GOOD_CLIENT = 1

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="arena", daemon=True)
        self.gw: SimulatedGateway
        self.ib: IB
        self.ticker: Ticker
        self.resting: Trade
        self.quote_updates = 0
        self.checks = 0
        self.served_checks = 0
        self.frames_sent = 0
        self.next_client_id = 100

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> Arena:
        """Start the loop, the gateway and the well-behaved client with its resting order."""
        self._thread.start()
        self.run(self._setup())
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the arena's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _setup(self) -> None:
        self.gw = SimulatedGateway(port=0, config=self.config)
        await self.gw.start()
        self.ib = IB()
        await self.ib.connectAsync("127.0.0.1", self.gw.port, clientId=self.GOOD_CLIENT, timeout=5)
        self.ticker = self.ib.reqMktData(aapl_contract())

        def count(_ticker: Ticker) -> None:
            self.quote_updates += 1

        self.ticker.updateEvent += count
        await until(lambda: self.ticker.bid > 0, "the first quote")
        below = round(self.ticker.bid * 0.9, 2)
        self.resting = self.ib.placeOrder(aapl_contract(), LimitOrder("BUY", 10, below))
        await until(lambda: self.resting.orderStatus.status == "Submitted", "the resting order")

    async def served(self, timeout: float = 3.0) -> bool:
        """True when the good client gets an answer and a new quote within ``timeout``."""
        self.checks += 1
        before = self.quote_updates
        try:
            await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), timeout)
            await until(lambda: self.quote_updates > before, "a quote", timeout)
        except (TimeoutError, AssertionError):
            return False
        ok = self.ib.isConnected() and not self.resting.isDone()
        self.served_checks += ok
        return ok

    def client_id(self) -> int:
        """A fresh client id for a hostile connection."""
        self.next_client_id += 1
        return self.next_client_id

    async def fill_resting(self) -> None:
        """Move the price through the resting order and wait for its fill."""
        limit = self.resting.order.lmtPrice
        self.gw.set_price("AAPL", round(limit - 0.5, 2))
        await until(lambda: self.resting.orderStatus.status == "Filled", "the resting fill", 10)

    def stop(self) -> None:
        """Disconnect, stop the gateway and the loop."""

        async def teardown() -> None:
            self.ib.disconnect()
            await self.gw.stop()

        try:
            self.run(teardown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()


async def until(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    """Wait (polling every 5 ms) until ``predicate()``; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def exchange(
    port: int, client_id: int | None, frames: list[bytes], *, close_after: bool = False
) -> tuple[list[list[str]], bool]:
    """Connect, handshake (and startApi unless ``client_id`` is None), send ``frames``.

    Then send reqCurrentTime as a marker and read until its answer or until the
    gateway closes. Returns the messages received after the handshake and
    whether the gateway closed the connection.
    """
    client = await RawClient.connect(port, client_id=client_id)
    try:
        if client_id is not None:
            await client.expect(lambda m: m[0] == "9", 3.0)
        for data in frames:
            client.send_bytes(data)
        if close_after:
            return client.messages, False
        client.send(49, 1)
        while True:
            message = await client.read_message(5.0)
            if message is None:
                return client.messages, True
            if message[0] == "49" and len(message) == 3:
                return client.messages, False
    finally:
        await client.close()


def crashes(messages: list[list[str]]) -> list[list[str]]:
    """Error 322 answers that mean a handler raised (TWS's own 322 for a duplicate
    ticker id is a normal answer, as documented in ``docs/simulator.md``)."""
    return [
        m
        for m in messages
        if m[0] == "4" and len(m) > 4 and m[3] == "322" and not m[4].endswith("Duplicate ticker id")
    ]
