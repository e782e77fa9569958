"""Marks (ibconn.positions.marks): portfolio updates, then the connector's market data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pytest
from helpers import next_item, until
from ib_async import Contract, Ticker

from ibconn import IBConnector, RequestTimeoutError
from ibconn.contracts.resolver import ContractLike, ResolvedContract
from ibconn.positions.marks import MarkBook
from ibconn.positions.models import MarkSource, PositionSource
from ibconn.sim import SimulatedGateway

from .fakes import AAPL, ES_Z6, T0, NoContracts, portfolio

pytestmark = pytest.mark.timeout(30)


async def test_marks_from_portfolio_updates_then_from_market_data(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    updates = connector.position_updates()
    await connector.place_market_order("AAPL", 100, "BUY")
    await next_item(updates)
    gw.set_price("AAPL", 192.0)
    marked = await next_item(
        updates, lambda p: p.source is PositionSource.MARK and p.market_price == 192.0
    )
    assert marked.mark_source is MarkSource.PORTFOLIO
    assert marked.market_value == pytest.approx(19200.0)
    assert marked.unrealized_pnl == pytest.approx(19200.0 - 100 * 190.02)
    async with await connector.subscribe_market_data("AAPL"):
        gw.set_price("AAPL", 193.0)  # bid 192.99, ask 193.01
        await until(
            lambda: (
                (p := connector.position("AAPL")) is not None
                and p.mark_source is MarkSource.MARKET_DATA
                and p.market_price == pytest.approx(193.0)
            )
        )
    gw.set_price("AAPL", 191.0)  # released: back to the gateway's marks
    await until(
        lambda: (
            (p := connector.position("AAPL")) is not None
            and p.mark_source is MarkSource.PORTFOLIO
            and p.market_price == 191.0
        )
    )


# -- alone: the mark book over a fake market data service --------------------------------------


@dataclass(frozen=True)
class Line:
    con_id: int
    kind: str = "mkt"
    active: bool = True
    stale: bool = False


@dataclass(frozen=True)
class FakeQuote:
    mid: float | None
    time: datetime = T0


class FakeMarketData:
    def __init__(self) -> None:
        self.line_list: list[Line] = []
        self.mids: dict[int, float | None] = {}

    def lines(self) -> Sequence[Line]:
        return self.line_list

    async def quote(self, instrument: ContractLike, timeout: float | None = None) -> FakeQuote:
        assert isinstance(instrument, Contract)
        if instrument.conId not in self.mids:
            raise RequestTimeoutError("no quote")
        return FakeQuote(self.mids[instrument.conId])


class KnownContracts(NoContracts):
    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        return resolved(AAPL) if con_id == AAPL.conId else None


def resolved(contract: Contract) -> ResolvedContract:
    return ResolvedContract(
        contract=contract,
        con_id=contract.conId,
        symbol=contract.symbol,
        sec_type=contract.secType,
        exchange="SMART",
        primary_exchange="NASDAQ",
        currency=contract.currency,
        local_symbol=contract.localSymbol,
        min_tick=0.01,
        market_rule_ids=(),
        size_increment=1.0,
        min_size=1.0,
        multiplier=1.0,
        long_name="",
        time_zone="US/Eastern",
    )


def test_a_portfolio_price_marks_until_a_market_data_line_is_subscribed() -> None:
    marks = MarkBook(NoContracts(), None)
    assert marks.mark(AAPL.conId) is None
    assert marks.on_portfolio(portfolio(float("nan"))) is False  # no price
    assert marks.on_portfolio(portfolio(190.0)) is True
    assert marks.on_portfolio(portfolio(190.0)) is False  # unchanged
    mark = marks.mark(AAPL.conId)
    assert mark is not None and (mark[0], mark[2]) == (190.0, MarkSource.PORTFOLIO)
    assert marks.note_tickers([Ticker(contract=AAPL)], {AAPL.conId}) is False  # no market data


async def test_the_market_data_mid_wins_while_its_line_is_active() -> None:
    market_data = FakeMarketData()
    marks = MarkBook(KnownContracts(), market_data)
    marks.on_portfolio(portfolio(190.0))
    changed: list[int] = []
    ticks = [Ticker(contract=AAPL), Ticker(contract=ES_Z6), Ticker()]
    assert marks.note_tickers(ticks, {12345}) is False  # neither is held
    assert marks.note_tickers(ticks, {AAPL.conId}) is True
    market_data.mids[AAPL.conId] = 191.5
    await marks.refresh(changed.append)
    assert changed == [] and not marks.has_dirty  # no active line: the mid is not taken
    market_data.line_list = [Line(AAPL.conId)]
    marks.note_tickers(ticks, {AAPL.conId})
    await marks.refresh(changed.append)
    assert changed == [AAPL.conId] and marks.has_market_data_marks
    mark = marks.mark(AAPL.conId)
    assert mark == (191.5, T0, MarkSource.MARKET_DATA)
    market_data.line_list = [Line(AAPL.conId, stale=True)]  # stale: back to the portfolio
    mark = marks.mark(AAPL.conId)
    assert mark is not None and (mark[0], mark[2]) == (190.0, MarkSource.PORTFOLIO)
    market_data.line_list = [Line(AAPL.conId)]
    market_data.mids[AAPL.conId] = None  # one side missing: the mark stays
    marks.note_tickers(ticks, {AAPL.conId})
    await marks.refresh(changed.append)
    assert changed == [AAPL.conId] and marks.mark(AAPL.conId) == mark_of(191.5)


def mark_of(price: float) -> tuple[float, datetime, MarkSource]:
    return price, T0, MarkSource.MARKET_DATA
