"""The TWS socket protocol (server versions 157-178): framing, field encoding, ids, parsing.

Everything here is pure (no sockets, no asyncio) so it can be tested on its own:

* framing: a 4-byte big-endian length followed by NUL-terminated text fields;
  :class:`FrameReader` re-assembles frames from arbitrary TCP chunks;
* encoding: :func:`encode_message` formats Python values the way TWS does
  (floats shortest-round-trip, bools ``1``/``0``, ``None`` as ``""``, strings
  ASCII-only with ``\\uXXXX`` escapes);
* ids: :class:`In` (client → gateway) and :class:`Out` (gateway → client);
* parsing: :class:`FieldReader` reads request fields and normalises both
  clients' "unset" conventions (``""``, ``1.7976931348623157E308`` /
  ``e+308``, ``2147483647``, strike ``0.0``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import TYPE_CHECKING, TypeAlias

from ibconn.sim.protocol import versions
from ibconn.sim.protocol.versions import MIN_SERVER_VERSION, SERVER_VERSION

if TYPE_CHECKING:
    from ibconn.sim.server.gateway import ClientSession, SimulatedGateway

__all__ = [
    "API_PREFIX",
    "INT32_MAX",
    "INT32_MIN",
    "KNOWN_REQUEST_IDS",
    "MAX_MESSAGE_SIZE",
    "MIN_SERVER_VERSION",
    "SERVER_VERSION",
    "TWS_ERROR_TEXTS",
    "UNSET_DOUBLE",
    "UNSET_INTEGER",
    "UNSET_LONG",
    "ContractSpec",
    "FieldReader",
    "FrameError",
    "FrameReader",
    "Handler",
    "In",
    "Out",
    "ProtocolError",
    "RequestParseError",
    "ascii_safe",
    "decode_fields",
    "encode_fields",
    "encode_message",
    "error_message_fields",
    "format_field",
    "format_float",
    "int32",
    "parse_version_range",
    "req_id_of",
]


API_PREFIX = b"API\0"
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
"""Frames longer than this (16 MiB) are refused, like the clients' own ``MAX_MSG_LEN``."""

UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
"""TWS reads int fields as 32-bit integers: a value outside this range is unreadable."""
UNSET_LONG = 2**63 - 1

_LEN = struct.Struct(">I")

Handler: TypeAlias = (
    "Callable[[SimulatedGateway, ClientSession, list[str]], Awaitable[None] | None]"
)
"""A request handler: ``(gateway, session, fields)`` where ``fields[0]`` is the message id."""


class In(IntEnum):
    """Message ids a client sends (the ones the simulator knows by name)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    REQ_MKT_DEPTH = 10
    CANCEL_MKT_DEPTH = 11
    REQ_NEWS_BULLETINS = 12
    CANCEL_NEWS_BULLETINS = 13
    SET_SERVER_LOGLEVEL = 14
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_FA = 18
    REPLACE_FA = 19
    REQ_HISTORICAL_DATA = 20
    EXERCISE_OPTIONS = 21
    REQ_SCANNER_SUBSCRIPTION = 22
    CANCEL_SCANNER_SUBSCRIPTION = 23
    REQ_SCANNER_PARAMETERS = 24
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_REAL_TIME_BARS = 50
    CANCEL_REAL_TIME_BARS = 51
    REQ_FUNDAMENTAL_DATA = 52
    CANCEL_FUNDAMENTAL_DATA = 53
    REQ_CALC_IMPLIED_VOLAT = 54
    REQ_CALC_OPTION_PRICE = 55
    CANCEL_CALC_IMPLIED_VOLAT = 56
    CANCEL_CALC_OPTION_PRICE = 57
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    VERIFY_REQUEST = 65
    VERIFY_MESSAGE = 66
    QUERY_DISPLAY_GROUPS = 67
    SUBSCRIBE_TO_GROUP_EVENTS = 68
    UPDATE_DISPLAY_GROUP = 69
    UNSUBSCRIBE_FROM_GROUP_EVENTS = 70
    START_API = 71
    VERIFY_AND_AUTH_REQUEST = 72
    VERIFY_AND_AUTH_MESSAGE = 73
    REQ_POSITIONS_MULTI = 74
    CANCEL_POSITIONS_MULTI = 75
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_SOFT_DOLLAR_TIERS = 79
    REQ_FAMILY_CODES = 80
    REQ_MATCHING_SYMBOLS = 81
    REQ_MKT_DEPTH_EXCHANGES = 82
    REQ_SMART_COMPONENTS = 83
    REQ_NEWS_ARTICLE = 84
    REQ_NEWS_PROVIDERS = 85
    REQ_HISTORICAL_NEWS = 86
    REQ_HEAD_TIMESTAMP = 87
    REQ_HISTOGRAM_DATA = 88
    CANCEL_HISTOGRAM_DATA = 89
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_MARKET_RULE = 91
    REQ_PNL = 92
    CANCEL_PNL = 93
    REQ_PNL_SINGLE = 94
    CANCEL_PNL_SINGLE = 95
    REQ_HISTORICAL_TICKS = 96
    REQ_TICK_BY_TICK_DATA = 97
    CANCEL_TICK_BY_TICK_DATA = 98
    REQ_COMPLETED_ORDERS = 99
    REQ_WSH_META_DATA = 100
    CANCEL_WSH_META_DATA = 101
    REQ_WSH_EVENT_DATA = 102
    CANCEL_WSH_EVENT_DATA = 103
    REQ_USER_INFO = 104


KNOWN_REQUEST_IDS: frozenset[int] = frozenset(int(m) for m in In)
"""Every request id a real TWS (at 178) accepts, simulated or not."""


class Out(IntEnum):
    """Message ids the gateway sends."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    TICK_GENERIC = 45
    TICK_STRING = 46
    CURRENT_TIME = 49
    REAL_TIME_BARS = 50
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    POSITION_MULTI = 71
    POSITION_MULTI_END = 72
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    SECURITY_DEFINITION_OPTION_PARAMETER = 75
    SECURITY_DEFINITION_OPTION_PARAMETER_END = 76
    TICK_REQ_PARAMS = 81
    HISTORICAL_DATA_UPDATE = 90
    MARKET_RULE = 93
    PNL = 94
    PNL_SINGLE = 95
    TICK_BY_TICK = 99
    ORDER_BOUND = 100
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


# Where the request id (or order id) sits in a request, by message id; used to
# address error replies. Messages absent here are answered with reqId -1.
_REQ_ID_INDEX: dict[int, int] = {
    In.REQ_MKT_DATA: 2,
    In.CANCEL_MKT_DATA: 2,
    In.PLACE_ORDER: 1,
    In.CANCEL_ORDER: 2,
    In.REQ_EXECUTIONS: 2,
    In.REQ_CONTRACT_DETAILS: 2,
    In.REQ_MKT_DEPTH: 2,
    In.CANCEL_MKT_DEPTH: 2,
    In.REQ_HISTORICAL_DATA: 1,
    In.CANCEL_HISTORICAL_DATA: 2,
    In.REQ_REAL_TIME_BARS: 2,
    In.CANCEL_REAL_TIME_BARS: 2,
    In.REQ_ACCOUNT_SUMMARY: 2,
    In.CANCEL_ACCOUNT_SUMMARY: 2,
    In.REQ_POSITIONS_MULTI: 2,
    In.CANCEL_POSITIONS_MULTI: 2,
    In.REQ_ACCOUNT_UPDATES_MULTI: 2,
    In.CANCEL_ACCOUNT_UPDATES_MULTI: 2,
    In.REQ_HEAD_TIMESTAMP: 1,
    In.REQ_HISTOGRAM_DATA: 1,
    In.REQ_PNL: 1,
    In.CANCEL_PNL: 1,
    In.REQ_PNL_SINGLE: 1,
    In.CANCEL_PNL_SINGLE: 1,
    In.REQ_HISTORICAL_TICKS: 1,
    In.REQ_TICK_BY_TICK_DATA: 1,
    In.CANCEL_TICK_BY_TICK_DATA: 1,
}


def req_id_of(fields: list[str]) -> int:
    """The request (or order) id of a request, or -1 when it has none or it is unreadable."""
    if not fields:
        return -1
    try:
        index = _REQ_ID_INDEX.get(int(fields[0]))
        if index is None or index >= len(fields):
            return -1
        return int(fields[index])
    except ValueError:
        return -1


TWS_ERROR_TEXTS: dict[int, str] = {
    100: "Max rate of messages per second has been exceeded.",
    162: "Historical Market Data Service error message:",
    200: "No security definition has been found for the request",
    300: "Can't find EId with tickerId:",
    320: "Error reading request.",
    321: "Error validating request.",
    322: "Error processing request.",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    327: "Only API connections with clientId set to 0 can set the auto bind TWS orders property.",
    354: "Requested market data is not subscribed.",
    366: "No historical data query found for ticker id:",
    420: "Invalid Real-time Query:",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    1300: "TWS socket port has been reset and this connection is being dropped. "
    "Please reconnect on port {port}",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2107: "HMDS data farm connection is inactive but should be available upon demand.ushmds",
    2108: "Market data farm connection is inactive but should be available upon demand.usfarm",
    2110: "Connectivity between Trader Workstation and server is broken. "
    "It will be restored automatically.",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10089: "Requested market data requires additional subscription for API. "
    "See link in 'Market Data Connections' dialog for more details.",
    10147: "OrderId {order_id} that needs to be cancelled is not found.",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    10168: "Requested market data is not subscribed. Delayed market data is not enabled.",
    10197: "No market data during competing live session",
}
"""TWS's standard texts for the codes the simulator sends (``{...}`` filled in by callers)."""


class ProtocolError(Exception):
    """A client broke the wire protocol."""


class FrameError(ProtocolError):
    """A length prefix is impossible (zero or above the maximum): the stream cannot resync."""


class RequestParseError(ProtocolError):
    """A well-framed request could not be read (bad text, missing or non-numeric field)."""


# --------------------------------------------------------------------------- framing


class FrameReader:
    """Re-assembles length-prefixed frames from arbitrarily chunked bytes.

    ``feed(data)`` returns the payloads completed by ``data`` (without their
    length prefix). A zero or oversized length raises :class:`FrameError`;
    after that the reader is unusable, as the stream has lost its framing.
    """

    __slots__ = ("_buf", "_max", "_pos")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every frame it completes, in order."""
        buf = self._buf
        buf += data
        pos = self._pos
        end = len(buf)
        frames: list[bytes] = []
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size == 0 or size > self._max:
                raise FrameError(f"invalid message length {size}")
            if end - pos - 4 < size:
                break
            frames.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos == end:
            buf.clear()
            pos = 0
        elif pos > 65536:
            del buf[:pos]
            pos = 0
        self._pos = pos
        return frames


def decode_fields(payload: bytes) -> list[str]:
    """Split one frame's payload into text fields (strict UTF-8)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestParseError(f"payload is not UTF-8 text: {exc}") from None
    fields = text.split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    if not fields or not fields[0]:
        raise RequestParseError("empty message or message id")
    return fields


# --------------------------------------------------------------------------- encoding


def ascii_safe(text: str) -> str:
    """``text`` with NULs removed and every non-ASCII character escaped as ``\\uXXXX``."""
    if text.isascii():
        return text.replace("\0", "") if "\0" in text else text
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if code == 0:
            continue
        if code < 128:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def format_float(value: float) -> str:
    """A float as TWS writes it: shortest round-trip text, ``""`` for unset/NaN."""
    if math.isnan(value) or value == UNSET_DOUBLE:
        return ""
    if math.isinf(value):
        return "Infinite" if value > 0 else "-Infinite"
    if value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    return repr(value)


def format_field(value: object) -> str:
    """One field's text: bool → ``1``/``0``, ``None`` → ``""``, floats via :func:`format_float`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, Decimal):
        return str(value)
    return ascii_safe(str(value))


def encode_fields(*fields: object) -> bytes:
    """The payload (without length prefix) of a message made of ``fields``."""
    return "".join(format_field(f) + "\0" for f in fields).encode("ascii")


def encode_message(*fields: object) -> bytes:
    """A complete frame: 4-byte big-endian length + NUL-terminated fields."""
    payload = encode_fields(*fields)
    return _LEN.pack(len(payload)) + payload


def error_message_fields(
    version: int, req_id: int, code: int, text: str, advanced_reject: str = ""
) -> list[object]:
    """error (4) v=2 at ``version``: ``4|2|reqId|code|text`` plus, from 166,
    ``advancedOrderRejectJson`` (178 has no error time)."""
    fields: list[object] = [Out.ERR_MSG, 2, req_id, code, text]
    if version >= versions.ADVANCED_ORDER_REJECT:
        fields.append(advanced_reject)
    return fields


def frame(payload: bytes) -> bytes:
    """Prefix an already encoded payload with its length."""
    return _LEN.pack(len(payload)) + payload


# --------------------------------------------------------------------------- handshake


def parse_version_range(text: str) -> tuple[int, int, str]:
    """Parse ``"v157..178"`` (or ``"v178"``), optionally followed by ``" +OPTIONS"``.

    Returns ``(min_version, max_version, options)``; raises :class:`RequestParseError`.
    """
    head, _, options = text.strip().partition(" ")
    if not head.startswith("v"):
        raise RequestParseError(f"bad version announcement {text!r}")
    lo_text, sep, hi_text = head[1:].partition("..")
    try:
        lo = int(lo_text)
        hi = int(hi_text) if sep else lo
    except ValueError:
        raise RequestParseError(f"bad version announcement {text!r}") from None
    if lo <= 0 or hi < lo:
        raise RequestParseError(f"bad version range {text!r}")
    return lo, hi, options.strip()


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class ContractSpec:
    """The 12 contract fields of a request, with unset values normalised.

    ``con_id`` is 0 and ``strike`` is ``None`` when not given; text fields are
    stripped (and ``sec_type``/``currency``/``exchange`` upper-cased).
    """

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float | None = None
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""

    def describe(self) -> str:
        """A short human description, e.g. ``AAPL STK SMART USD`` or ``conId 265598``."""
        parts = [self.symbol or self.local_symbol, self.sec_type, self.exchange, self.currency]
        text = " ".join(p for p in parts if p)
        if self.con_id:
            text = f"conId {self.con_id}" + (f" ({text})" if text else "")
        return text or "empty contract"


_UNSET_TEXTS = frozenset(
    {
        "",
        "1.7976931348623157E308",
        "1.7976931348623157e+308",
        "1.7976931348623157e308",
        "1.7976931348623157E+308",
        str(UNSET_INTEGER),
        str(UNSET_LONG),
    }
)


def int32(value: int, name: str, text: str) -> int:
    """``value`` when it fits TWS's 32-bit int fields, else :class:`RequestParseError`."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise RequestParseError(f"field {name!r} is not a 32-bit integer: {text[:40]!r}")
    return value


class FieldReader:
    """Reads a request's fields in order, normalising unset values.

    Every getter raises :class:`RequestParseError` when the field is missing or
    has the wrong type, naming the field, so the gateway can answer TWS-style.
    """

    __slots__ = ("_fields", "_pos")

    def __init__(self, fields: list[str], start: int = 1) -> None:
        self._fields = fields
        self._pos = start

    @property
    def position(self) -> int:
        """Index of the next field to read."""
        return self._pos

    @property
    def remaining(self) -> int:
        """How many fields are left."""
        return max(0, len(self._fields) - self._pos)

    def _next(self, name: str) -> str:
        if self._pos >= len(self._fields):
            raise RequestParseError(f"missing field {name!r} (index {self._pos})")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def skip(self, count: int = 1) -> None:
        """Skip ``count`` fields (they must exist)."""
        for _ in range(count):
            self._next("skipped field")

    def read_str(self, name: str = "field") -> str:
        """The next field as text."""
        return self._next(name)

    def read_opt_str(self, default: str = "") -> str:
        """The next field as text, or ``default`` when the request is shorter."""
        if self._pos >= len(self._fields):
            return default
        return self._next("optional field")

    def read_int(self, name: str = "field") -> int:
        """The next field as a required integer."""
        text = self._next(name)
        try:
            return int32(int(text), name, text)
        except ValueError:
            raise RequestParseError(f"field {name!r} is not an integer: {text!r}") from None

    def read_opt_int(self, name: str = "field", default: int | None = None) -> int | None:
        """The next field as an integer, ``default`` when unset (``""``/``2147483647``)."""
        text = self._next(name).strip()
        if text in _UNSET_TEXTS:
            return default
        try:
            return int32(int(text), name, text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise RequestParseError(f"field {name!r} is not an integer: {text!r}") from None
            if not as_float.is_integer():
                raise RequestParseError(f"field {name!r} is not an integer: {text!r}") from None
            return int32(int(as_float), name, text)

    def read_float(self, name: str = "field", default: float | None = None) -> float | None:
        """The next field as a float, ``default`` when unset (``""`` or ``1.797…E308``)."""
        text = self._next(name).strip()
        if text in _UNSET_TEXTS:
            return default
        if text == "Infinite":
            return math.inf
        try:
            value = float(text)
        except ValueError:
            raise RequestParseError(f"field {name!r} is not a number: {text!r}") from None
        if value == UNSET_DOUBLE or math.isnan(value):
            return default
        return value

    def read_bool(self, name: str = "field", default: bool = False) -> bool:
        """The next field as a bool: ``1``/``0`` (also ``true``/``false``), ``""`` → default."""
        text = self._next(name).strip().lower()
        if text == "":
            return default
        if text in {"1", "true"}:
            return True
        if text in {"0", "false"}:
            return False
        raise RequestParseError(f"field {name!r} is not a boolean: {text!r}")

    def read_contract(self) -> ContractSpec:
        """The 12-field contract block (C12)."""
        con_id = self.read_opt_int("conId", 0) or 0
        symbol = self.read_str("symbol").strip()
        sec_type = self.read_str("secType").strip().upper()
        last_trade = self.read_str("lastTradeDateOrContractMonth").strip()
        strike = self.read_float("strike")
        if strike == 0.0:
            strike = None
        right = self.read_str("right").strip().upper()
        if right in {"?", "0"}:
            right = ""
        multiplier = self.read_str("multiplier").strip()
        exchange = self.read_str("exchange").strip().upper()
        primary = self.read_str("primaryExchange").strip().upper()
        currency = self.read_str("currency").strip().upper()
        local_symbol = self.read_str("localSymbol").strip()
        trading_class = self.read_str("tradingClass").strip()
        return ContractSpec(
            con_id=con_id,
            symbol=symbol,
            sec_type=sec_type,
            last_trade_date=last_trade,
            strike=strike,
            right=right,
            multiplier=multiplier,
            exchange=exchange,
            primary_exchange=primary,
            currency=currency,
            local_symbol=local_symbol,
            trading_class=trading_class,
        )
