"""The checks of public arguments: what each accepts, and errors that say what is allowed."""

from __future__ import annotations

import math

import pytest
from ib_async import ComboLeg, Contract, DeltaNeutralContract, Stock

from ibconn.core.arguments import (
    MAX_CAPACITY,
    MAX_TIMEOUT,
    capacity_arg,
    check_contract,
    flag_arg,
    number_arg,
    text_arg,
    text_problem,
    timeout_arg,
)
from ibconn.errors import InvalidInputError


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (0, 0.0), (2, 2.0), (0.5, 0.5), (MAX_TIMEOUT, MAX_TIMEOUT)],
)
def test_timeout_accepts_seconds(value: object, expected: float | None) -> None:
    assert timeout_arg("timeout", value) == expected


@pytest.mark.parametrize(
    "value", [-1, -0.001, math.nan, math.inf, MAX_TIMEOUT + 1, 10**400, True, "5", [5]]
)
def test_timeout_refuses_what_is_not_a_finite_duration(value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        timeout_arg("timeout", value)
    message = str(info.value)
    assert message.startswith("timeout=")
    assert "allowed: None or a finite number of seconds from 0 to 3.1536e+07" in message


def test_number_within_bounds() -> None:
    assert number_arg("x", None, low=0, high=1) is None
    assert number_arg("x", 0, low=0, high=1) == 0.0
    assert number_arg("x", 1, low=0, high=1) == 1.0
    with pytest.raises(InvalidInputError, match=r"x=0 is not allowed; allowed: None or .* > 0 "):
        number_arg("x", 0, low=0, high=1, low_open=True)
    for bad in (-0.1, 1.1, math.nan, -math.inf, False, "0.5", 10**400):
        with pytest.raises(InvalidInputError, match="allowed: None or a finite number >= 0"):
            number_arg("x", bad, low=0, high=1)


def test_capacity_is_a_whole_number_in_range() -> None:
    assert capacity_arg("capacity", None) is None
    assert capacity_arg("capacity", 1) == 1
    assert capacity_arg("capacity", MAX_CAPACITY) == MAX_CAPACITY
    for bad in (0, -1, MAX_CAPACITY + 1, 1.0, True, "10"):
        with pytest.raises(InvalidInputError, match="from 1 to 10,000,000"):
            capacity_arg("capacity", bad)


def test_flags_are_only_booleans() -> None:
    assert flag_arg("outside_rth", True) is True
    assert flag_arg("outside_rth", False) is False
    for bad in (1, 0, "yes", None):
        with pytest.raises(InvalidInputError, match="allowed: True or False"):
            flag_arg("outside_rth", bad)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("plain text, ünïcödé ok", None),
        ("a\x00b", "U+0000 at position 1"),
        ("tab\there", "U+0009 at position 3"),
        ("\x7f", "U+007F at position 0"),
        ("x\x9f", "U+009F at position 1"),
        ("lone \ud800", "U+D800 at position 5"),
    ],
)
def test_text_problem_names_the_character_and_position(text: str, problem: str | None) -> None:
    found = text_problem(text)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_text_arg() -> None:
    assert text_arg("tag", None) is None
    assert text_arg("tag", "ok") == "ok"
    with pytest.raises(InvalidInputError, match="allowed: text without"):
        text_arg("tag", None, optional=False)
    with pytest.raises(InvalidInputError, match=r"\(5 characters\)"):
        text_arg("tag", "abcde", max_length=4)
    with pytest.raises(InvalidInputError, match="U\\+000A"):
        text_arg("tag", "two\nlines")
    with pytest.raises(InvalidInputError, match="tag=b'x'"):
        text_arg("tag", b"x")


def test_long_values_are_shortened_in_the_message() -> None:
    with pytest.raises(InvalidInputError) as info:
        text_arg("tag", "y" * 500)
    assert "yyy..." in str(info.value)
    assert len(str(info.value)) < 250


def test_a_good_contract_passes() -> None:
    contract = Stock("AAPL", "SMART", "USD")
    contract.comboLegs = [ComboLeg(conId=1, ratio=1, action="BUY", exchange="SMART")]
    contract.deltaNeutralContract = DeltaNeutralContract(conId=2, delta=0.5, price=1.0)
    check_contract(contract)


@pytest.mark.parametrize(
    ("contract", "where"),
    [
        (Contract(symbol="AA\x00PL"), "contract.symbol="),
        (Contract(symbol="AAPL", strike=math.nan), "contract.strike="),
        (Contract(conId=-1), "contract.conId="),
        (Contract(conId=2**31), "contract.conId="),
        (
            Contract(symbol="X", comboLegs=[ComboLeg(conId=1, exchange="SM\nART")]),
            "contract.comboLegs[0].exchange=",
        ),
        (
            Contract(symbol="X", deltaNeutralContract=DeltaNeutralContract(delta=math.inf)),
            "contract.deltaNeutralContract.delta=",
        ),
    ],
)
def test_a_contract_that_cannot_travel_is_refused(contract: Contract, where: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_contract(contract)
    assert str(info.value).startswith(where)
