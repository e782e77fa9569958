"""Instruments the simulated gateway knows: their contract details and start prices."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ibconn.sim.protocol import ContractSpec

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "Instrument",
    "InstrumentBook",
    "MarketRule",
    "market_rules",
]

_US_STOCK_HOURS = "20261125:0930-20261125:1600;20261126:CLOSED;20261127:0930-20261127:1300"
_US_STOCK_ORDER_TYPES = "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AON,AVGCOST,BASKET,COND,DAY,DEACT,FOK,GAT,GTC,GTD,IOC,LIT,LMT,MIT,MKT,MOC,MTL,NONALGO,OCA,PEGMID,REL,RTH,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF"  # noqa: E501


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable instrument of the simulated gateway.

    ``symbol`` is what a client asks for (``EUR`` with currency ``USD`` for the
    EURUSD pair). ``min_tick`` is the price increment orders must respect;
    ``multiplier`` scales P&L (1 for stocks and forex).
    """

    symbol: str
    sec_type: str
    con_id: int
    exchange: str
    currency: str
    start_price: float
    primary_exchange: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    last_trade_date: str = ""
    multiplier: float = 1.0
    min_tick: float = 0.01
    market_rule_id: int = 26
    size_increment: float = 1.0
    min_size: float = 1.0
    long_name: str = ""
    time_zone: str = "US/Eastern"
    trading_hours: str = _US_STOCK_HOURS
    liquid_hours: str = _US_STOCK_HOURS
    valid_exchanges: str = "SMART,NYSE,NASDAQ,ARCA,BATS,IEX"
    order_types: str = _US_STOCK_ORDER_TYPES
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    stock_type: str = "COMMON"
    spread: float = 0.02
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def display_name(self) -> str:
        """``EURUSD`` for a pair, the future's local symbol, else the symbol."""
        if self.sec_type == "CASH":
            return f"{self.symbol}{self.currency}"
        return self.local_symbol or self.symbol

    @property
    def multiplier_text(self) -> str:
        """The multiplier as TWS writes it in contract fields (empty for 1)."""
        if self.sec_type in {"STK", "CASH"}:
            return ""
        return f"{self.multiplier:g}"


DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        symbol="AAPL",
        sec_type="STK",
        con_id=265598,
        exchange="SMART",
        currency="USD",
        primary_exchange="NASDAQ",
        local_symbol="AAPL",
        trading_class="NMS",
        start_price=190.00,
        long_name="APPLE INC",
        industry="Technology",
        category="Computers",
        subcategory="Computers",
    ),
    Instrument(
        symbol="MSFT",
        sec_type="STK",
        con_id=272093,
        exchange="SMART",
        currency="USD",
        primary_exchange="NASDAQ",
        local_symbol="MSFT",
        trading_class="NMS",
        start_price=420.00,
        long_name="MICROSOFT CORP",
        industry="Technology",
        category="Software",
        subcategory="Applications Software",
    ),
    Instrument(
        symbol="SPY",
        sec_type="STK",
        con_id=756733,
        exchange="SMART",
        currency="USD",
        primary_exchange="ARCA",
        local_symbol="SPY",
        trading_class="SPY",
        start_price=590.00,
        long_name="SPDR S&P 500 ETF TRUST",
        industry="Funds",
        category="Equity Fund",
        subcategory="Growth&Income-Large Cap",
        stock_type="ETF",
    ),
    Instrument(
        symbol="TSLA",
        sec_type="STK",
        con_id=76792991,
        exchange="SMART",
        currency="USD",
        primary_exchange="NASDAQ",
        local_symbol="TSLA",
        trading_class="NMS",
        start_price=250.00,
        long_name="TESLA INC",
        industry="Consumer, Cyclical",
        category="Auto Manufacturers",
        subcategory="Auto-Cars/Light Trucks",
    ),
    Instrument(
        symbol="EUR",
        sec_type="CASH",
        con_id=12087792,
        exchange="IDEALPRO",
        currency="USD",
        local_symbol="EUR.USD",
        trading_class="EUR.USD",
        start_price=1.08500,
        min_tick=0.00005,
        market_rule_id=239,
        size_increment=1.0,
        min_size=1.0,
        long_name="European Monetary Union Euro",
        time_zone="US/Eastern",
        trading_hours="20261124:1715-20261125:1700;20261125:1715-20261126:1700",
        liquid_hours="20261124:1715-20261125:1700;20261125:1715-20261126:1700",
        valid_exchanges="IDEALPRO",
        order_types="LMT,MKT,STP,STPLMT,TRAIL,DAY,GTC,IOC,FOK,GTD",
        stock_type="",
        spread=0.0001,
    ),
    Instrument(
        symbol="ES",
        sec_type="FUT",
        con_id=637533641,
        exchange="CME",
        currency="USD",
        local_symbol="ESZ6",
        trading_class="ES",
        last_trade_date="20261218",
        multiplier=50.0,
        min_tick=0.25,
        market_rule_id=67,
        start_price=6000.00,
        long_name="E-mini S&P 500",
        time_zone="US/Central",
        trading_hours="20261124:1700-20261125:1600;20261125:1700-20261126:1200",
        liquid_hours="20261125:0830-20261125:1500",
        valid_exchanges="CME",
        order_types="LMT,MKT,STP,STPLMT,TRAIL,DAY,GTC,IOC,FOK,GTD",
        stock_type="",
        spread=0.25,
    ),
)


MarketRule = tuple[tuple[float, float], ...]
"""A market rule: ``(low_edge, increment)`` pairs, as message 93 carries them."""

_KNOWN_RULES: dict[int, MarketRule] = {
    26: ((0.0, 0.01),),
    239: ((0.0, 0.00005),),
    67: ((0.0, 0.25),),
}


def market_rules(instruments: Iterable[Instrument]) -> dict[int, MarketRule]:
    """Market rules for every rule id the instruments use.

    Ids TWS is known to use keep their real increments; any other id gets a
    single increment equal to the instrument's ``min_tick``.
    """
    rules: dict[int, MarketRule] = {}
    for inst in instruments:
        rules.setdefault(
            inst.market_rule_id,
            _KNOWN_RULES.get(inst.market_rule_id, ((0.0, inst.min_tick),)),
        )
    return rules


class InstrumentBook:
    """Looks instruments up the way TWS resolves a request's contract fields.

    A positive ``conId`` decides alone. Otherwise the symbol (or local symbol)
    must match and every other field that is given must agree: security type,
    currency, exchange (any of the instrument's valid exchanges), primary
    exchange, expiry (a ``YYYYMM`` month matches its day), local symbol,
    trading class and multiplier. A strike or right never matches these
    non-option instruments.
    """

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._all = tuple(instruments)
        self._by_con_id = {inst.con_id: inst for inst in self._all}
        if len(self._by_con_id) != len(self._all):
            raise ValueError("instrument con_ids must be unique")

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def by_con_id(self, con_id: int) -> Instrument | None:
        """The instrument with this conId, or ``None``."""
        return self._by_con_id.get(con_id)

    def by_symbol(self, symbol: str) -> Instrument:
        """The instrument named ``symbol``: its symbol, display name or local symbol.

        Raises :class:`KeyError` when none or several instruments carry that name.
        """
        wanted = symbol.strip().upper()
        found = [
            inst
            for inst in self._all
            if wanted in {inst.symbol.upper(), inst.display_name.upper(), inst.local_symbol.upper()}
        ]
        if len(found) != 1:
            # An exact display name wins over a shared symbol (e.g. EURUSD vs EUR).
            exact = [inst for inst in found if inst.display_name.upper() == wanted]
            if len(exact) == 1:
                return exact[0]
            raise KeyError(f"{len(found)} instruments are named {symbol!r}")
        return found[0]

    def resolve(self, symbol_or_con_id: str | int) -> Instrument:
        """The instrument for a symbol/display name or a conId; :class:`KeyError` if unknown."""
        if isinstance(symbol_or_con_id, int):
            inst = self.by_con_id(symbol_or_con_id)
            if inst is None:
                raise KeyError(f"no instrument with conId {symbol_or_con_id}")
            return inst
        return self.by_symbol(symbol_or_con_id)

    def match(self, spec: ContractSpec) -> list[Instrument]:
        """Every instrument the contract fields of a request describe."""
        if spec.con_id > 0:
            inst = self._by_con_id.get(spec.con_id)
            return [inst] if inst is not None else []
        if not spec.symbol and not spec.local_symbol:
            return []
        return [inst for inst in self._all if _matches(inst, spec)]


def _matches(inst: Instrument, spec: ContractSpec) -> bool:
    if spec.symbol and spec.symbol.upper() != inst.symbol.upper():
        return False
    if spec.local_symbol and spec.local_symbol.upper() != inst.local_symbol.upper():
        return False
    if spec.sec_type and spec.sec_type != inst.sec_type:
        return False
    if spec.currency and spec.currency != inst.currency.upper():
        return False
    if spec.exchange and spec.exchange not in _exchanges(inst):
        return False
    if spec.primary_exchange and spec.primary_exchange != inst.primary_exchange.upper():
        return False
    if spec.last_trade_date and not inst.last_trade_date.startswith(spec.last_trade_date):
        return False
    if spec.trading_class and spec.trading_class.upper() != inst.trading_class.upper():
        return False
    if spec.multiplier:
        try:
            if float(spec.multiplier) != inst.multiplier:
                return False
        except ValueError:
            return False
    return spec.strike is None and not spec.right


def _exchanges(inst: Instrument) -> set[str]:
    names = {e.strip().upper() for e in inst.valid_exchanges.split(",") if e.strip()}
    names.add(inst.exchange.upper())
    if inst.primary_exchange:
        names.add(inst.primary_exchange.upper())
    return names
