"""Framing, field encoding and request parsing of the wire protocol."""

from __future__ import annotations

import itertools
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibconn.sim.protocol.fields import FieldReader
from ibconn.sim.protocol.framing import (
    FrameError,
    FrameReader,
    RequestParseError,
    ascii_safe,
    decode_fields,
    encode_fields,
    encode_message,
    format_field,
    parse_version_range,
)
from ibconn.sim.protocol.ids import req_id_of


def test_encode_message_is_length_prefixed_nul_terminated_fields() -> None:
    data = encode_message(49, 1, 1795600000)
    assert data == struct.pack(">I", 16) + b"49\x001\x001795600000\x00"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (True, "1"),
        (False, "0"),
        (7, "7"),
        (190.02, "190.02"),
        (190.0, "190.0"),
        (0.00005, "5e-05"),
        (math.nan, ""),
        (1.7976931348623157e308, ""),
        (math.inf, "Infinite"),
        ("caf\u00e9", "caf\\u00e9"),
        ("a\0b", "ab"),
    ],
)
def test_field_formatting(value: object, text: str) -> None:
    assert format_field(value) == text


def test_ascii_safe_escapes_what_the_clients_unescape() -> None:
    text = "Soci\u00e9t\u00e9 G\u00e9n\u00e9rale \U0001f600"
    escaped = ascii_safe(text)
    assert escaped.isascii()
    assert escaped.encode().decode("unicode-escape") == text


def test_float_text_round_trips() -> None:
    for value in (1.08505, 6000.25, 0.1 + 0.2, 123456789.125):
        assert float(format_field(value)) == value


def test_decode_fields_rejects_non_utf8_and_empty() -> None:
    assert decode_fields(b"49\x001\x00") == ["49", "1"]
    with pytest.raises(RequestParseError):
        decode_fields(b"\xff\xfe\x00")
    with pytest.raises(RequestParseError):
        decode_fields(b"\x00")


def test_frame_reader_rejects_zero_and_oversized_lengths() -> None:
    with pytest.raises(FrameError):
        FrameReader().feed(struct.pack(">I", 0))
    with pytest.raises(FrameError):
        FrameReader(max_size=1024).feed(struct.pack(">I", 2048) + b"x")


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.lists(
            st.text(alphabet=st.characters(blacklist_characters="\0"), max_size=20),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
)
def test_frame_reader_reassembles_any_chunking(messages: list[list[str]], cuts: list[int]) -> None:
    messages = [["1", *fields] for fields in messages]  # a message id comes first
    payloads = [encode_fields(*fields) for fields in messages]
    stream = b"".join(struct.pack(">I", len(p)) + p for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    reader = FrameReader()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += reader.feed(stream[start:end])
    assert out == payloads
    assert reader.buffered == 0
    assert [decode_fields(p) for p in out] == [[ascii_safe(f) for f in m] for m in messages]


def test_frame_reader_byte_by_byte() -> None:
    stream = encode_message(1, 2, 3) * 3
    reader = FrameReader()
    frames = [f for i in range(len(stream)) for f in reader.feed(stream[i : i + 1])]
    assert len(frames) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v157..178", (157, 178, "")),
        ("v100..226 +PACEAPI", (100, 226, "+PACEAPI")),
        ("v178", (178, 178, "")),
    ],
)
def test_version_announcements(text: str, expected: tuple[int, int, str]) -> None:
    assert parse_version_range(text) == expected


@pytest.mark.parametrize("text", ["157..178", "vX..178", "v178..157", ""])
def test_bad_version_announcements(text: str) -> None:
    with pytest.raises(RequestParseError):
        parse_version_range(text)


def test_field_reader_normalises_both_clients_unset_values() -> None:
    fields = ["1", "", "2147483647", "1.7976931348623157e+308", "1.7976931348623157E308", "12", "x"]
    reader = FieldReader(fields)
    assert reader.read_opt_int("a") is None
    assert reader.read_opt_int("b") is None
    assert reader.read_float("c") is None
    assert reader.read_float("d") is None
    assert reader.read_int("e") == 12
    with pytest.raises(RequestParseError, match="'f'"):
        reader.read_int("f")
    with pytest.raises(RequestParseError, match="missing"):
        reader.read_str("g")


def test_contract_block_normalisation() -> None:
    # ib_async sends strike 0.0 and conId 0 for "unset"
    fields = ["9", "8", "3", "0", "aapl", "stk", "", "0.0", "?", "", "smart", "", "usd", "", ""]
    reader = FieldReader(fields, start=3)
    spec = reader.read_contract()
    assert (spec.con_id, spec.symbol, spec.sec_type, spec.strike, spec.right) == (
        0,
        "aapl",
        "STK",
        None,
        "",
    )
    assert (spec.exchange, spec.currency) == ("SMART", "USD")


def test_req_id_of() -> None:
    assert req_id_of(["1", "11", "42"]) == 42
    assert req_id_of(["97", "7"]) == 7
    assert req_id_of(["49", "1"]) == -1
    assert req_id_of(["x"]) == -1
