"""Contract resolution without a gateway: symbols, contract details, the resolver's cache."""

from __future__ import annotations

import asyncio
import math
from typing import cast

import pytest
from ib_async import IB, Contract, ContractDetails, Forex, Future, Stock

from ibconn.contracts.resolver import (
    ContractResolver,
    ResolvedContract,
    symbol_key,
    to_contract,
    trading_symbol,
)
from ibconn.errors import InvalidInputError, NotConnectedError, RequestTimeoutError

UNSET_DOUBLE = 1.7976931348623157e308  # TWS's "no value"


def details(contract: Contract, **fields: object) -> ContractDetails:
    values: dict[str, object] = {"minTick": 0.01, "marketRuleIds": "26,240", "longName": "X"}
    values.update(fields)
    return ContractDetails(contract=contract, **values)  # type: ignore[arg-type]


def qualified(symbol: str = "AAPL", con_id: int = 265598, sec_type: str = "STK") -> Contract:
    return Contract(
        secType=sec_type,
        conId=con_id,
        symbol=symbol,
        exchange="SMART",
        primaryExchange="NASDAQ",
        currency="USD",
        localSymbol=symbol,
    )


# -- symbols ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contract", "expected"),
    [
        (Stock("AAPL", "SMART", "USD"), "AAPL"),
        (Forex("EURUSD"), "EUR.USD"),
        (Contract(secType="CASH", symbol="gbp", currency="jpy"), "GBP.JPY"),
        (Contract(secType="CASH", symbol="EUR"), "EUR"),  # no currency: just the symbol
        (Future("ES", "202612", "CME"), "ES"),
    ],
)
def test_trading_symbol(contract: Contract, expected: str) -> None:
    assert trading_symbol(contract) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [(" aapl ", "AAPL"), ("eurusd", "EUR.USD"), ("EUR.USD", "EUR.USD"), ("BRK B", "BRK B")],
)
def test_symbol_key_matches_trading_symbol_spelling(text: str, expected: str) -> None:
    assert symbol_key(text) == expected


def test_a_symbol_string_is_a_smart_routed_us_stock() -> None:
    contract = to_contract(" brk b ")
    assert isinstance(contract, Stock)
    assert (contract.symbol, contract.exchange, contract.currency) == ("BRK B", "SMART", "USD")


def test_a_contract_passes_through() -> None:
    contract = Future(conId=495512563)
    assert to_contract(contract) is contract


@pytest.mark.parametrize("text", ["", "   ", "AAPL!", "ſpy", "\x1f0", "A" * 21, "-AAPL", "AAPL\n"])
def test_bad_symbol_strings_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="not a valid stock symbol"):
        to_contract(text)


def test_a_contract_without_any_identity_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="conId, a symbol or a localSymbol"):
        to_contract(Contract(secType="STK", exchange="SMART"))


@pytest.mark.parametrize("value", [None, 265598, b"AAPL", ["AAPL"]])
def test_other_instrument_types_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError, match="a symbol string or an ib_async Contract"):
        to_contract(value)  # type: ignore[arg-type]


# -- contract details ------------------------------------------------------------------


def test_details_become_a_resolved_contract() -> None:
    contract = qualified()
    contract.multiplier = "100"
    resolved = ResolvedContract.from_details(
        details(contract, sizeIncrement=0.0001, minSize=0.5, timeZoneId="US/Eastern")
    )
    assert (resolved.con_id, resolved.symbol, resolved.sec_type) == (265598, "AAPL", "STK")
    assert (resolved.exchange, resolved.primary_exchange) == ("SMART", "NASDAQ")
    assert resolved.min_tick == 0.01
    assert resolved.market_rule_ids == (26, 240)
    assert (resolved.size_increment, resolved.min_size, resolved.multiplier) == (0.0001, 0.5, 100)
    assert resolved.time_zone == "US/Eastern"
    assert resolved.display_name == "AAPL"


@pytest.mark.parametrize("multiplier", ["", "abc", "0", "-5", "nan", "inf", "1e300", "1e400"])
def test_an_unset_or_meaningless_multiplier_is_one(multiplier: str) -> None:
    contract = qualified()
    contract.multiplier = multiplier
    assert ResolvedContract.from_details(details(contract)).multiplier == 1.0


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, UNSET_DOUBLE])
def test_an_unset_size_increment_or_min_size_is_one(value: float) -> None:
    resolved = ResolvedContract.from_details(
        details(qualified(), sizeIncrement=value, minSize=value)
    )
    assert (resolved.size_increment, resolved.min_size) == (1.0, 1.0)


@pytest.mark.parametrize("value", [0.0, math.nan, math.inf, UNSET_DOUBLE, -UNSET_DOUBLE])
def test_an_unset_min_tick_is_zero(value: float) -> None:
    # 0.0 means "no tick known" (order checks then use their 0.01 fallback), never a huge tick
    assert ResolvedContract.from_details(details(qualified(), minTick=value)).min_tick == 0.0


# -- the resolver ------------------------------------------------------------------------


class FakeIB:
    """Answers reqContractDetailsAsync from a table; counts the requests."""

    def __init__(self, answers: dict[str, list[ContractDetails]]) -> None:
        self.answers = answers
        self.connected = True
        self.requests: list[Contract] = []
        self.gate: asyncio.Event | None = None

    def isConnected(self) -> bool:
        return self.connected

    async def reqContractDetailsAsync(self, contract: Contract) -> list[ContractDetails]:
        self.requests.append(contract)
        if self.gate is not None:
            await self.gate.wait()
        return self.answers.get(contract.symbol or contract.localSymbol, [])


def resolver_for(ib: FakeIB, timeout: float = 5.0) -> ContractResolver:
    return ContractResolver(lambda: cast(IB, ib), timeout=timeout)


async def test_a_contract_is_qualified_once_and_cached() -> None:
    ib = FakeIB({"AAPL": [details(qualified())]})
    resolver = resolver_for(ib)
    assert resolver.cached("AAPL") is None
    first = await resolver.resolve("AAPL")
    assert await resolver.resolve("AAPL") is first
    assert await resolver.resolve(" aapl") is first  # same contract, other spelling
    assert resolver.cached("AAPL") is first
    assert resolver.by_con_id(265598) is first
    assert await resolver.resolve(Stock(conId=265598)) is first
    assert len(ib.requests) == 1
    assert len(resolver) == 1


async def test_concurrent_resolves_share_one_request() -> None:
    ib = FakeIB({"AAPL": [details(qualified())]})
    ib.gate = asyncio.Event()
    resolver = resolver_for(ib)
    waiting = [asyncio.create_task(resolver.resolve("AAPL")) for _ in range(3)]
    await asyncio.sleep(0)
    ib.gate.set()
    results = await asyncio.gather(*waiting)
    assert results[0] is results[1] is results[2]
    assert len(ib.requests) == 1


async def test_not_connected_is_refused_without_a_request() -> None:
    ib = FakeIB({"AAPL": [details(qualified())]})
    ib.connected = False
    with pytest.raises(NotConnectedError, match="not connected"):
        await resolver_for(ib).resolve("AAPL")
    assert ib.requests == []


async def test_an_unknown_contract_is_invalid_input() -> None:
    resolver = resolver_for(FakeIB({}))
    with pytest.raises(InvalidInputError, match="no security definition"):
        await resolver.resolve("NOPE")
    assert resolver.cached("NOPE") is None


async def test_an_ambiguous_contract_names_the_candidates() -> None:
    ib = FakeIB(
        {"SPY": [details(qualified("SPY", 1)), details(qualified("SPY", 2, sec_type="OPT"))]}
    )
    with pytest.raises(InvalidInputError, match="ambiguous: TWS found 2"):
        await resolver_for(ib).resolve(Contract(symbol="SPY"))
    # with a security type, the one match of that type wins
    resolved = await resolver_for(ib).resolve(Contract(symbol="SPY", secType="STK"))
    assert resolved.con_id == 1


async def test_a_silent_tws_times_out() -> None:
    ib = FakeIB({"AAPL": [details(qualified())]})
    ib.gate = asyncio.Event()  # never set
    resolver = resolver_for(ib, timeout=0.05)
    with pytest.raises(RequestTimeoutError, match=r"within 0\.05 s"):
        await resolver.resolve("AAPL")
    ib.gate.set()
    assert (await resolver.resolve("AAPL")).con_id == 265598  # nothing stuck: asked again
    assert len(ib.requests) == 2
