"""Instruments the simulated gateway knows: their contract details, sessions and start prices."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from ibconn.sim.protocol.fields import ContractSpec

__all__ = [
    "DEFAULT_INSTRUMENTS",
    "SCHEDULES",
    "Instrument",
    "InstrumentBook",
    "MarketRule",
    "market_rules",
    "session_hours",
]

SCHEDULES = ("us_stock", "us_option", "forex", "cme")
"""Session templates: ``us_stock`` (04:00-20:00, liquid 09:30-16:00 US/Eastern),
``us_option`` (09:30-16:00),
``forex`` (17:15 the day before to 17:00) and ``cme`` (17:00 the day before to
16:00, liquid 08:30-15:00 US/Central); Saturdays and Sundays are ``CLOSED``."""

HOURS_DAYS = 7
"""How many calendar days (from the simulated date) trading/liquid hours cover."""
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
    schedule: str = "us_stock"
    """The session template (:data:`SCHEDULES`) the hours are generated from."""
    trading_hours: str = ""
    """Fixed ``tradingHours`` text; empty (the default): generated from ``schedule``."""
    liquid_hours: str = ""
    """Fixed ``liquidHours`` text; empty (the default): generated from ``schedule``."""
    isin: str = ""
    """The ISIN sent in contractData's ``secIdList`` (stocks and ETFs)."""
    strike: float = 0.0
    """An option's strike (0 for everything else)."""
    right: str = ""
    """An option's right: ``C`` or ``P``."""
    under_con_id: int = 0
    """An option's underlying (its conId); options are priced from its quotes."""
    volatility: float = 0.25
    """An option's (flat) volatility in the pricing model."""
    valid_exchanges: str = "SMART,NYSE,NASDAQ,ARCA,BATS,IEX"
    order_types: str = _US_STOCK_ORDER_TYPES
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    stock_type: str = "COMMON"
    spread: float = 0.02
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"instrument {self.symbol}: unknown schedule {self.schedule!r}; "
                f"known: {', '.join(SCHEDULES)}"
            )

    @property
    def display_name(self) -> str:
        """``EURUSD`` for a pair, the local symbol of a future or option, else the symbol
        (an option without a local symbol: ``XYZ 20271217 5C``)."""
        if self.sec_type == "CASH":
            return f"{self.symbol}{self.currency}"
        if self.sec_type == "OPT" and not self.local_symbol:
            return f"{self.symbol} {self.last_trade_date} {self.strike:g}{self.right}"
        return self.local_symbol or self.symbol

    def hours(self, now: float) -> tuple[str, str]:
        """``(tradingHours, liquidHours)`` as TWS sends them, starting at the date of ``now``
        (epoch seconds) in the instrument's time zone and covering :data:`HOURS_DAYS` days."""
        trading, liquid = self.trading_hours, self.liquid_hours
        if trading and liquid:
            return trading, liquid
        gen_trading, gen_liquid = session_hours(self.schedule, self.time_zone, now)
        return trading or gen_trading, liquid or gen_liquid

    @property
    def multiplier_text(self) -> str:
        """The multiplier as TWS writes it in contract fields (empty for 1)."""
        if self.sec_type in {"STK", "CASH"}:
            return ""
        return f"{self.multiplier:g}"


def _day(d: date) -> str:
    return d.strftime("%Y%m%d")


def session_hours(schedule: str, time_zone: str, now: float) -> tuple[str, str]:
    """Generated ``(tradingHours, liquidHours)`` for ``schedule`` (see :data:`SCHEDULES`).

    TWS's format: ``YYYYMMDD:HHMM-YYYYMMDD:HHMM`` per trading day, ``YYYYMMDD:CLOSED``
    for a day without a session, separated by ``;``; the first day is the date of
    ``now`` in ``time_zone``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    today = datetime.fromtimestamp(now, ZoneInfo(time_zone)).date()
    trading: list[str] = []
    liquid: list[str] = []
    for offset in range(HOURS_DAYS):
        d = today + timedelta(days=offset)
        day = _day(d)
        if d.weekday() >= 5:
            trading.append(f"{day}:CLOSED")
            liquid.append(f"{day}:CLOSED")
            continue
        eve = _day(d - timedelta(days=1))
        if schedule == "us_stock":
            trading.append(f"{day}:0400-{day}:2000")
            liquid.append(f"{day}:0930-{day}:1600")
        elif schedule == "us_option":
            trading.append(f"{day}:0930-{day}:1600")
            liquid.append(f"{day}:0930-{day}:1600")
        elif schedule == "forex":
            trading.append(f"{eve}:1715-{day}:1700")
            liquid.append(f"{eve}:1715-{day}:1700")
        else:
            trading.append(f"{eve}:1700-{day}:1600")
            liquid.append(f"{day}:0830-{day}:1500")
    return ";".join(trading), ";".join(liquid)


_FOREX_ORDER_TYPES = "LMT,MKT,STP,STPLMT,TRAIL,DAY,GTC,IOC,FOK,GTD"
_FUTURE_ORDER_TYPES = "LMT,MKT,STP,STPLMT,TRAIL,DAY,GTC,IOC,FOK,GTD"


def _stock(  # noqa: PLR0917 (a compact catalogue table)
    symbol: str,
    con_id: int,
    primary: str,
    price: float,
    long_name: str,
    isin: str,
    industry: str,
    category: str,
    subcategory: str,
    *,
    trading_class: str = "NMS",
    stock_type: str = "COMMON",
) -> Instrument:
    return Instrument(
        symbol=symbol,
        sec_type="STK",
        con_id=con_id,
        exchange="SMART",
        currency="USD",
        primary_exchange=primary,
        local_symbol=symbol,
        trading_class=trading_class,
        start_price=price,
        long_name=long_name,
        isin=isin,
        industry=industry,
        category=category,
        subcategory=subcategory,
        stock_type=stock_type,
    )


def _etf(  # noqa: PLR0917
    symbol: str, con_id: int, primary: str, price: float, long_name: str, isin: str
) -> Instrument:
    return _stock(
        symbol,
        con_id,
        primary,
        price,
        long_name,
        isin,
        "Funds",
        "Equity Fund",
        "Growth&Income-Large Cap",
        trading_class=symbol,
        stock_type="ETF",
    )


def _pair(
    base: str, quote: str, con_id: int, price: float, long_name: str, *, min_tick: float = 0.00005
) -> Instrument:
    return Instrument(
        symbol=base,
        sec_type="CASH",
        con_id=con_id,
        exchange="IDEALPRO",
        currency=quote,
        local_symbol=f"{base}.{quote}",
        trading_class=f"{base}.{quote}",
        start_price=price,
        min_tick=min_tick,
        market_rule_id=239 if min_tick == 0.00005 else 240,
        long_name=long_name,
        schedule="forex",
        valid_exchanges="IDEALPRO",
        order_types=_FOREX_ORDER_TYPES,
        stock_type="",
        spread=min_tick * 2,
    )


def _future(  # noqa: PLR0917
    symbol: str,
    con_id: int,
    exchange: str,
    multiplier: float,
    min_tick: float,
    rule_id: int,
    price: float,
    long_name: str,
) -> Instrument:
    return Instrument(
        symbol=symbol,
        sec_type="FUT",
        con_id=con_id,
        exchange=exchange,
        currency="USD",
        local_symbol=f"{symbol}Z6",
        trading_class=symbol,
        last_trade_date="20261218",
        multiplier=multiplier,
        min_tick=min_tick,
        market_rule_id=rule_id,
        start_price=price,
        long_name=long_name,
        time_zone="US/Central",
        schedule="cme",
        valid_exchanges=exchange,
        order_types=_FUTURE_ORDER_TYPES,
        stock_type="",
        spread=min_tick,
    )


def option_chain(
    underlying: Instrument,
    expiries: tuple[str, ...],
    strikes: tuple[float, ...],
    *,
    first_con_id: int,
    volatility: float = 0.25,
) -> tuple[Instrument, ...]:
    """Calls and puts of ``underlying`` for every expiry and strike (multiplier 100).

    con_ids are ``first_con_id`` upwards; local symbols follow the OCC format
    (``AAPL  261218C00190000``).
    """
    out: list[Instrument] = []
    con_id = first_con_id
    for expiry in expiries:
        for strike in strikes:
            for right in ("C", "P"):
                occ = f"{underlying.symbol:<6}{expiry[2:8]}{right}{round(strike * 1000):08d}"
                out.append(
                    Instrument(
                        symbol=underlying.symbol,
                        sec_type="OPT",
                        con_id=con_id,
                        exchange="SMART",
                        currency=underlying.currency,
                        start_price=0.0,
                        local_symbol=occ,
                        trading_class=underlying.symbol,
                        last_trade_date=expiry,
                        multiplier=100.0,
                        min_tick=0.01,
                        market_rule_id=26,
                        long_name=underlying.long_name,
                        time_zone=underlying.time_zone,
                        schedule="us_option",
                        valid_exchanges="SMART,AMEX,CBOE,ISE,PHLX",
                        order_types="LMT,MKT,STP,STPLMT,TRAIL,DAY,GTC,IOC,FOK,GTD,WHATIF",
                        stock_type="",
                        spread=0.05,
                        strike=strike,
                        right=right,
                        under_con_id=underlying.con_id,
                        volatility=volatility,
                    )
                )
                con_id += 1
    return tuple(out)


_BASE_INSTRUMENTS: tuple[Instrument, ...] = (
    # The original six keep their con_ids and prices (tests rely on them).
    _stock("AAPL", 265598, "NASDAQ", 190.00, "APPLE INC", "US0378331005",
           "Technology", "Computers", "Computers"),
    _stock("MSFT", 272093, "NASDAQ", 420.00, "MICROSOFT CORP", "US5949181045",
           "Technology", "Software", "Applications Software"),
    _etf("SPY", 756733, "ARCA", 590.00, "SPDR S&P 500 ETF TRUST", "US78462F1030"),
    _stock("TSLA", 76792991, "NASDAQ", 250.00, "TESLA INC", "US88160R1014",
           "Consumer, Cyclical", "Auto Manufacturers", "Auto-Cars/Light Trucks"),
    _pair("EUR", "USD", 12087792, 1.08500, "European Monetary Union Euro"),
    _future("ES", 637533641, "CME", 50.0, 0.25, 67, 6000.00, "E-mini S&P 500"),
    # Large US stocks and ETFs.
    _stock("AMZN", 3691937, "NASDAQ", 205.00, "AMAZON.COM INC", "US0231351067",
           "Communications", "Internet", "E-Commerce/Products"),
    _stock("GOOGL", 208813719, "NASDAQ", 175.00, "ALPHABET INC-CL A", "US02079K3059",
           "Communications", "Internet", "Web Portals/ISP"),
    _stock("META", 107113386, "NASDAQ", 580.00, "META PLATFORMS INC-CLASS A", "US30303M1027",
           "Communications", "Internet", "Internet Content-Entertainment"),
    _stock("NVDA", 4815747, "NASDAQ", 140.00, "NVIDIA CORP", "US67066G1040",
           "Technology", "Semiconductors", "Electronic Compo-Semicon"),
    _stock("AMD", 4391, "NASDAQ", 140.00, "ADVANCED MICRO DEVICES", "US0079031078",
           "Technology", "Semiconductors", "Electronic Compo-Semicon"),
    _stock("NFLX", 15124833, "NASDAQ", 900.00, "NETFLIX INC", "US64110L1061",
           "Communications", "Internet", "Internet Content-Entertainment"),
    _stock("JPM", 1520593, "NYSE", 240.00, "JPMORGAN CHASE & CO", "US46625H1005",
           "Financial", "Banks", "Money Center Banks", trading_class="JPM"),
    _etf("QQQ", 320227571, "NASDAQ", 510.00, "INVESCO QQQ TRUST SERIES 1", "US46090E1038"),
    _etf("IWM", 9579970, "ARCA", 230.00, "ISHARES RUSSELL 2000 ETF", "US4642876555"),
    _etf("DIA", 73128548, "ARCA", 440.00, "SPDR DJIA TRUST", "US78467X1090"),
    # Major forex pairs.
    _pair("GBP", "USD", 12087797, 1.27000, "British pound"),
    _pair("USD", "JPY", 15016059, 150.000, "Japanese yen", min_tick=0.005),
    _pair("AUD", "USD", 14433401, 0.65500, "Australian dollar"),
    _pair("USD", "CHF", 12087820, 0.88000, "Swiss franc"),
    _pair("USD", "CAD", 15016062, 1.40000, "Canadian dollar"),
    # Front index futures (CME / CBOT).
    _future("NQ", 637533450, "CME", 20.0, 0.25, 67, 21000.00, "E-mini NASDAQ 100"),
    _future("RTY", 637533593, "CME", 50.0, 0.1, 1010, 2400.0, "E-mini Russell 2000 Index"),
    _future("YM", 637533398, "CBOT", 5.0, 1.0, 1011, 44000.0, "Mini Sized Dow Jones Industrial"),
)  # fmt: skip


def _underlying(symbol: str) -> Instrument:
    return next(i for i in _BASE_INSTRUMENTS if i.symbol == symbol and i.sec_type == "STK")


_OPTION_EXPIRIES = ("20261218", "20270115", "20270319")

DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = (
    *_BASE_INSTRUMENTS,
    *option_chain(_underlying("AAPL"), _OPTION_EXPIRIES,
                  tuple(float(k) for k in range(170, 215, 5)), first_con_id=900_000_001),
    *option_chain(_underlying("SPY"), _OPTION_EXPIRIES,
                  tuple(float(k) for k in range(560, 625, 5)), first_con_id=900_001_001,
                  volatility=0.18),
    *option_chain(_underlying("TSLA"), _OPTION_EXPIRIES,
                  tuple(float(k) for k in range(200, 305, 10)), first_con_id=900_002_001,
                  volatility=0.55),
)  # fmt: skip
"""The default catalogue (replaced as a whole by the ``instruments`` setting): the
instruments above plus option chains on AAPL, SPY and TSLA (three expiries each)."""


MarketRule = tuple[tuple[float, float], ...]
"""A market rule: ``(low_edge, increment)`` pairs, as message 93 carries them."""

_KNOWN_RULES: dict[int, MarketRule] = {
    26: ((0.0, 0.01),),
    239: ((0.0, 0.00005),),
    240: ((0.0, 0.005),),
    67: ((0.0, 0.25),),
    1010: ((0.0, 0.1),),
    1011: ((0.0, 1.0),),
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
    if inst.sec_type == "OPT":
        return _matches_option(inst, spec)
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


_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}


def _matches_option(inst: Instrument, spec: ContractSpec) -> bool:
    """Options match only a request for secType ``OPT`` (or their conId); strike, right
    and expiry narrow the chain when given."""
    if spec.sec_type != "OPT":
        return False
    if spec.symbol and spec.symbol.upper() != inst.symbol.upper():
        return False
    if spec.local_symbol and spec.local_symbol.replace(" ", "").upper() != (
        inst.local_symbol.replace(" ", "").upper()
    ):
        return False
    if spec.currency and spec.currency != inst.currency.upper():
        return False
    if spec.exchange and spec.exchange not in _exchanges(inst):
        return False
    if spec.last_trade_date and not inst.last_trade_date.startswith(spec.last_trade_date):
        return False
    if spec.trading_class and spec.trading_class.upper() != inst.trading_class.upper():
        return False
    if spec.strike is not None and abs(spec.strike - inst.strike) > 1e-9:
        return False
    if spec.right and _RIGHTS.get(spec.right) != inst.right:
        return False
    if spec.multiplier:
        try:
            return float(spec.multiplier) == inst.multiplier
        except ValueError:
            return False
    return True


def _exchanges(inst: Instrument) -> set[str]:
    names = {e.strip().upper() for e in inst.valid_exchanges.split(",") if e.strip()}
    names.add(inst.exchange.upper())
    if inst.primary_exchange:
        names.add(inst.primary_exchange.upper())
    return names
