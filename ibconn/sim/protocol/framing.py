"""TWS socket framing and field encoding (server versions 157-178).

Everything here is pure (no sockets, no asyncio) so it can be tested on its own:

* framing: a 4-byte big-endian length followed by NUL-terminated text fields;
  :class:`FrameReader` re-assembles frames from arbitrary TCP chunks;
* encoding: :func:`encode_message` formats Python values the way TWS does
  (floats shortest-round-trip, bools ``1``/``0``, ``None`` as ``""``, strings
  ASCII-only with ``\\uXXXX`` escapes).

Message ids are in :mod:`ibconn.sim.protocol.ids`, request parsing in
:mod:`ibconn.sim.protocol.fields`.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal

from ibconn.sim.protocol import versions
from ibconn.sim.protocol.ids import Out

__all__ = [
    "API_PREFIX",
    "INT32_MAX",
    "INT32_MIN",
    "MAX_MESSAGE_SIZE",
    "UNSET_DOUBLE",
    "UNSET_INTEGER",
    "UNSET_LONG",
    "FrameError",
    "FrameReader",
    "ProtocolError",
    "RequestParseError",
    "ascii_safe",
    "decode_fields",
    "encode_fields",
    "encode_message",
    "error_message_fields",
    "format_field",
    "format_float",
    "parse_version_range",
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
