"""Instruments the simulated gateway knows: their contract details and start prices."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_INSTRUMENTS", "Instrument"]

_US_STOCK_HOURS = (
    "20261125:0930-20261125:1600;20261126:CLOSED;20261127:0930-20261127:1300"
)
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
        symbol="AAPL", sec_type="STK", con_id=265598, exchange="SMART", currency="USD",
        primary_exchange="NASDAQ", local_symbol="AAPL", trading_class="NMS",
        start_price=190.00, long_name="APPLE INC", industry="Technology",
        category="Computers", subcategory="Computers",
    ),
    Instrument(
        symbol="MSFT", sec_type="STK", con_id=272093, exchange="SMART", currency="USD",
        primary_exchange="NASDAQ", local_symbol="MSFT", trading_class="NMS",
        start_price=420.00, long_name="MICROSOFT CORP", industry="Technology",
        category="Software", subcategory="Applications Software",
    ),
    Instrument(
        symbol="SPY", sec_type="STK", con_id=756733, exchange="SMART", currency="USD",
        primary_exchange="ARCA", local_symbol="SPY", trading_class="SPY",
        start_price=590.00, long_name="SPDR S&P 500 ETF TRUST", industry="Funds",
        category="Equity Fund", subcategory="Growth&Income-Large Cap", stock_type="ETF",
    ),
    Instrument(
        symbol="TSLA", sec_type="STK", con_id=76792991, exchange="SMART", currency="USD",
        primary_exchange="NASDAQ", local_symbol="TSLA", trading_class="NMS",
        start_price=250.00, long_name="TESLA INC", industry="Consumer, Cyclical",
        category="Auto Manufacturers", subcategory="Auto-Cars/Light Trucks",
    ),
    Instrument(
        symbol="EUR", sec_type="CASH", con_id=12087792, exchange="IDEALPRO", currency="USD",
        local_symbol="EUR.USD", trading_class="EUR.USD", start_price=1.08500,
        min_tick=0.00005, market_rule_id=239, size_increment=1.0, min_size=1.0,
        long_name="European Monetary Union Euro", time_zone="US/Eastern",
        trading_hours="20261124:1715-20261125:1700;20261125:1715-20261126:1700",
        liquid_hours="20261124:1715-20261125:1700;20261125:1715-20261126:1700",
        valid_exchanges="IDEALPRO", order_types="LMT,MKT,STP,STPLMT,TRAIL,DAY,GTC,IOC,FOK,GTD",
        stock_type="", spread=0.0001,
    ),
    Instrument(
        symbol="ES", sec_type="FUT", con_id=637533641, exchange="CME", currency="USD",
        local_symbol="ESZ6", trading_class="ES", last_trade_date="20261218",
        multiplier=50.0, min_tick=0.25, market_rule_id=67, start_price=6000.00,
        long_name="E-mini S&P 500", time_zone="US/Central",
        trading_hours="20261124:1700-20261125:1600;20261125:1700-20261126:1200",
        liquid_hours="20261125:0830-20261125:1500",
        valid_exchanges="CME", order_types="LMT,MKT,STP,STPLMT,TRAIL,DAY,GTC,IOC,FOK,GTD",
        stock_type="", spread=0.25,
    ),
)
