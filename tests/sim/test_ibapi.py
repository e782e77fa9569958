"""IBKR's official Python client (ibapi) against the simulated gateway, in a thread."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

from ibapi.client import EClient
from ibapi.contract import Contract, ContractDetails
from ibapi.wrapper import EWrapper

from ibconn.sim import SimConfig, SimulatedGateway

from .conftest import wait_until


class App(EWrapper, EClient):  # type: ignore[misc]
    def __init__(self) -> None:
        EClient.__init__(self, self)
        self.next_id: int | None = None
        self.accounts = ""
        self.details: list[ContractDetails] = []
        self.details_done = threading.Event()
        self.prices: list[tuple[int, int, float]] = []
        self.sizes: list[tuple[int, int, Decimal]] = []
        self.errors: list[tuple[int, int, str]] = []
        self.times: list[int] = []
        self.bad: list[Any] = []

    def nextValidId(self, orderId: int) -> None:
        self.next_id = orderId

    def managedAccounts(self, accountsList: str) -> None:
        self.accounts = accountsList

    def contractDetails(self, reqId: int, contractDetails: ContractDetails) -> None:
        self.details.append(contractDetails)

    def contractDetailsEnd(self, reqId: int) -> None:
        self.details_done.set()

    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
        self.prices.append((reqId, tickType, price))

    def tickSize(self, reqId: int, tickType: int, size: Decimal) -> None:
        self.sizes.append((reqId, tickType, size))

    def currentTime(self, time: int) -> None:
        self.times.append(time)

    def error(
        self,
        reqId: int,
        errorTime: int,
        errorCode: int,
        errorString: str,
        advancedOrderRejectJson: str = "",
    ) -> None:
        self.errors.append((reqId, errorCode, errorString))


async def test_official_client_connects_and_streams() -> None:
    async with SimulatedGateway(port=0, config=SimConfig(tick_rate=40)) as gw:
        app = App()
        await asyncio.to_thread(app.connect, "127.0.0.1", gw.port, 7)
        thread = threading.Thread(target=app.run, daemon=True)
        thread.start()
        try:
            assert app.serverVersion() == 178
            await wait_until(lambda: app.next_id is not None and app.accounts, what="start-up")
            assert app.next_id == 1 and app.accounts == "DU0000001"
            # the farm messages come with the start-up, read on the client's own thread
            await wait_until(
                lambda: {code for _, code, _ in app.errors} >= {2104, 2106, 2158},
                what="farm status messages",
            )
            assert {code for _, code, _ in app.errors} == {2104, 2106, 2158}
            assert 7 in gw.clients

            contract = Contract()
            contract.symbol, contract.secType = "AAPL", "STK"
            contract.exchange, contract.currency = "SMART", "USD"
            app.reqContractDetails(11, contract)
            await wait_until(app.details_done.is_set, what="contract details")
            [cd] = app.details
            assert cd.contract.conId == 265598 and cd.minTick == 0.01
            assert cd.longName == "APPLE INC" and cd.contract.primaryExchange == "NASDAQ"
            assert cd.marketRuleIds.startswith("26") and cd.minSize == Decimal("1")

            contract.conId = 265598
            app.reqMktData(12, contract, "", False, False, [])
            await wait_until(
                lambda: {1, 2, 4} <= {t for r, t, _ in app.prices if r == 12}, what="ticks"
            )
            bid = next(p for r, t, p in app.prices if r == 12 and t == 1)
            ask = next(p for r, t, p in app.prices if r == 12 and t == 2)
            assert 0 < bid < ask
            # explicit tickSize messages (0/3/5) and volume (8) arrived as Decimals
            assert {0, 3, 5, 8} <= {t for r, t, _ in app.sizes if r == 12}
            assert all(isinstance(s, Decimal) for _, _, s in app.sizes)
            count = len(app.prices)
            await wait_until(lambda: len(app.prices) > count + 3, what="updates")

            app.reqCurrentTime()
            await wait_until(lambda: bool(app.times), what="current time")
            assert abs(app.times[0] - gw.clock.time()) < 2
            assert not [e for e in app.errors if e[1] not in (2104, 2106, 2158)]
        finally:
            app.disconnect()
            await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive()
