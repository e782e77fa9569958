"""Turning what users type into qualified contracts, once.

A plain string means a US stock routed through SMART in USD (``"AAPL"``);
anything else is an ``ib_async`` contract. Each is qualified with TWS once and
cached with the details later services need (conId, min tick, market rules,
size increment, multiplier). Contract ids do not change across sessions, so
the cache survives reconnects.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

from ib_async import IB, Contract, ContractDetails, Stock

from ibconn.core.arguments import check_contract, text_problem
from ibconn.core.logs import get_logger
from ibconn.core.numbers import number_or_none
from ibconn.errors import InvalidInputError, NotConnectedError, RequestTimeoutError

__all__ = [
    "ContractLike",
    "ContractResolver",
    "ResolvedContract",
    "symbol_key",
    "to_contract",
    "trading_symbol",
]

ContractLike = str | Contract
"""What the public API accepts wherever it needs a contract."""

_log = get_logger("market_data")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9 .\-/]{0,19}$")
_PAIR = re.compile(r"^([A-Z]{3})\.?([A-Z]{3})$")


def trading_symbol(contract: Contract) -> str:
    """The one spelling of a contract's symbol on orders and fills.

    A forex pair is ``EUR.USD`` (base, a dot, quote currency: TWS's local
    symbol); anything else is the contract's ``symbol``.
    """
    if contract.secType == "CASH" and contract.symbol and contract.currency:
        return f"{contract.symbol}.{contract.currency}".upper()
    return contract.symbol


def symbol_key(text: str) -> str:
    """``text`` as compared with :func:`trading_symbol`: upper case, and a forex pair
    written without its dot (``EURUSD``) spelled with it (``EUR.USD``)."""
    key = text.strip().upper()
    pair = _PAIR.match(key)
    return f"{pair[1]}.{pair[2]}" if pair else key


@dataclass(frozen=True, slots=True)
class ResolvedContract:
    """A qualified contract and the details that orders and market data need."""

    contract: Contract
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    min_tick: float
    market_rule_ids: tuple[int, ...]
    size_increment: float
    min_size: float
    multiplier: float
    long_name: str
    time_zone: str

    @property
    def display_name(self) -> str:
        """A short name for logs and errors: ``AAPL``, ``EUR.USD``, ``ESZ6``."""
        return self.local_symbol or self.symbol

    @classmethod
    def from_details(cls, details: ContractDetails) -> ResolvedContract:
        """Build from the ``ContractDetails`` TWS returned for a qualified contract."""
        contract = details.contract
        if contract is None:  # pragma: no cover - TWS always sends the contract
            raise InvalidInputError("TWS returned contract details without a contract")
        rule_ids = tuple(
            int(part) for part in (details.marketRuleIds or "").split(",") if part.strip()
        )
        return cls(
            contract=contract,
            con_id=contract.conId,
            symbol=contract.symbol,
            sec_type=contract.secType,
            exchange=contract.exchange,
            primary_exchange=contract.primaryExchange,
            currency=contract.currency,
            local_symbol=contract.localSymbol,
            min_tick=_zero_when_unset(details.minTick),
            market_rule_ids=rule_ids,
            size_increment=_positive_or(details.sizeIncrement, 1.0),
            min_size=_positive_or(details.minSize, 1.0),
            multiplier=_positive_or(contract.multiplier, 1.0),
            long_name=details.longName,
            time_zone=details.timeZoneId,
        )


def _zero_when_unset(value: object) -> float:
    """A detail that TWS may leave unset (min tick): its number, else 0.0 ("not known")."""
    number = number_or_none(value)
    return 0.0 if number is None else number


def _positive_or(value: object, default: float) -> float:
    """A size or multiplier: its number when > 0, else ``default`` (unset, 0 or nonsense)."""
    number = _zero_when_unset(value)
    return number if number > 0 else default


def to_contract(instrument: ContractLike) -> Contract:
    """The unqualified ``ib_async`` contract for what the user passed.

    Raises :class:`InvalidInputError` for an empty or malformed symbol or a
    value that is neither a string nor a ``Contract``.
    """
    if isinstance(instrument, Contract):
        check_contract(instrument)  # nothing that cannot travel as one wire field (NUL, NaN)
        if not (instrument.conId or instrument.symbol or instrument.localSymbol):
            raise InvalidInputError(
                "a Contract needs at least a conId, a symbol or a localSymbol to be resolved"
            )
        return instrument
    if isinstance(instrument, str):
        # ASCII before the case change: 'ſpy'.upper() is 'SPY' and 'ıbm'.upper() is 'IBM'
        # and no control characters ('\x1f0'.strip() would be '0')
        clean = instrument.isascii() and text_problem(instrument) is None
        symbol = instrument.strip().upper() if clean else ""
        if not _SYMBOL.match(symbol):
            raise InvalidInputError(
                f"{instrument!r} is not a valid stock symbol: use 1-20 letters, digits, "
                "spaces, '.', '-' or '/' (e.g. 'AAPL', 'BRK B'), or pass an ib_async Contract"
            )
        return Stock(symbol, "SMART", "USD")
    raise InvalidInputError(
        f"instrument {type(instrument).__name__} is not allowed; allowed: a symbol string "
        "or an ib_async Contract"
    )


def _cache_key(contract: Contract) -> tuple[object, ...]:
    if contract.conId:
        return ("conId", contract.conId)
    return (
        contract.secType,
        contract.symbol,
        contract.localSymbol,
        contract.exchange,
        contract.primaryExchange,
        contract.currency,
        contract.lastTradeDateOrContractMonth,
        contract.strike,
        contract.right,
        contract.multiplier,
        contract.tradingClass,
    )


class ContractResolver:
    """Qualifies contracts through TWS once and caches the result.

    ``ib_provider`` returns the live ``IB`` or raises
    :class:`NotConnectedError`; the resolver never holds a stale one.
    """

    def __init__(self, ib_provider: Callable[[], IB], timeout: float = 10.0) -> None:
        self._ib_provider = ib_provider
        self._timeout = timeout
        self._by_key: dict[tuple[object, ...], ResolvedContract] = {}
        self._by_con_id: dict[int, ResolvedContract] = {}
        # Symbol strings exactly as passed: a hit skips building a Contract to look up.
        self._by_text: dict[str, ResolvedContract] = {}
        self._pending: dict[tuple[object, ...], asyncio.Future[ResolvedContract]] = {}

    def cached(self, instrument: ContractLike) -> ResolvedContract | None:
        """The cached resolution, or ``None`` if it was never resolved."""
        if type(instrument) is str:
            hit = self._by_text.get(instrument)
            if hit is not None:
                return hit
        contract = to_contract(instrument)
        if contract.conId and contract.conId in self._by_con_id:
            return self._by_con_id[contract.conId]
        found = self._by_key.get(_cache_key(contract))
        if found is not None and type(instrument) is str:
            self._by_text[instrument] = found
        return found

    def by_con_id(self, con_id: int) -> ResolvedContract | None:
        """The cached resolution for a contract id, if any."""
        return self._by_con_id.get(con_id)

    def __len__(self) -> int:
        return len(self._by_con_id)

    async def resolve(self, instrument: ContractLike) -> ResolvedContract:
        """Qualify ``instrument`` (once) and return it with its details.

        Raises :class:`InvalidInputError` when TWS knows no such contract or
        finds more than one, :class:`NotConnectedError` when not connected and
        :class:`RequestTimeoutError` when TWS does not answer in time.
        """
        hit = self.cached(instrument)
        if hit is not None:
            return hit
        contract = to_contract(instrument)
        key = _cache_key(contract)
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ResolvedContract] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            resolved = await self._qualify(contract)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        else:
            future.set_result(resolved)
            self._by_key[key] = resolved
            self._by_key[_cache_key(resolved.contract)] = resolved
            self._by_con_id[resolved.con_id] = resolved
            if type(instrument) is str:
                self._by_text[instrument] = resolved
            return resolved
        finally:
            del self._pending[key]

    async def _qualify(self, contract: Contract) -> ResolvedContract:
        ib = self._ib_provider()
        if not ib.isConnected():
            raise NotConnectedError(f"cannot resolve {_describe(contract)}: not connected to TWS")
        try:
            async with asyncio.timeout(self._timeout):
                details_list = await ib.reqContractDetailsAsync(contract)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"TWS did not answer the contract details request for {_describe(contract)} "
                f"within {self._timeout} s"
            ) from exc
        except ConnectionError as exc:
            raise NotConnectedError(
                f"the connection dropped while resolving {_describe(contract)}"
            ) from exc
        if not details_list:
            raise InvalidInputError(
                f"TWS knows no contract matching {_describe(contract)} (error 200: no security "
                "definition); check the symbol, security type, exchange and currency"
            )
        if len(details_list) > 1 and contract.secType:
            narrowed = [
                d for d in details_list if d.contract and d.contract.secType == contract.secType
            ]
            details_list = narrowed or details_list
        if len(details_list) > 1:
            candidates = ", ".join(
                _describe(d.contract) for d in details_list[:5] if d.contract is not None
            )
            raise InvalidInputError(
                f"{_describe(contract)} is ambiguous: TWS found {len(details_list)} contracts "
                f"({candidates}); give the exchange, currency or conId to pick one"
            )
        resolved = ResolvedContract.from_details(details_list[0])
        _log.debug("resolved {} to conId {}", _describe(contract), resolved.con_id)
        return resolved


def _describe(contract: Contract | None) -> str:
    if contract is None:
        return "<no contract>"
    parts = [contract.secType or "?", contract.localSymbol or contract.symbol or "?"]
    if contract.exchange:
        parts.append(f"@{contract.exchange}")
    if contract.currency:
        parts.append(contract.currency)
    if contract.conId:
        parts.append(f"conId={contract.conId}")
    return " ".join(parts)
