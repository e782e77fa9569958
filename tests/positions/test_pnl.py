"""Position arithmetic (ibconn.positions.pnl): average cost and realized P&L, table-driven."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from ibconn.positions.pnl import PositionLedger, PositionState, apply_fill, as_decimal
from ibconn.sim.broker.accounts import Ledger
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS

D = Decimal

# Each case: fills (signed quantity, price, commission), the multiplier, and what the
# position must be afterwards: (quantity, avg_cost, avg_price, realized, last fill's realized).
CASES: dict[str, tuple[list[tuple[str, str, str]], str, tuple[str, str, str, str, str | None]]] = {
    "open long": ([("100", "10", "1")], "1", ("100", "10.01", "10", "0", None)),
    "open short (net proceeds)": ([("-100", "20", "1")], "1", ("-100", "19.99", "20", "0", None)),
    "add to a long": (
        [("100", "10", "1"), ("100", "12", "1")],
        "1",
        ("200", "11.01", "11", "0", None),
    ),
    "partial close keeps the average": (
        [("100", "10", "1"), ("100", "12", "1"), ("-50", "13", "1")],
        "1",
        # 50 * (13 - 11.01) - 1
        ("150", "11.01", "11", "98.5", "98.5"),
    ),
    "full close": (
        [("100", "10", "1"), ("100", "12", "1"), ("-50", "13", "1"), ("-150", "10", "1")],
        "1",
        # in 2200 + 2, out 650 + 1500 - 2: net -54 over the round trip
        ("0", "0", "0", "-54", "-152.5"),
    ),
    "short partial cover": (
        [("-100", "50", "0"), ("40", "45", "0")],
        "1",
        ("-60", "50", "50", "200", "200"),
    ),
    "short full cover at a loss": (
        [("-100", "50", "1"), ("100", "52", "1")],
        "1",
        # -100 * (52 - 49.99) - 1
        ("0", "0", "0", "-202", "-202"),
    ),
    "reversal long to short": (
        [("100", "10", "1"), ("-150", "11", "3")],
        "1",
        # closes 100 with 2 of the 3 commission: 100 * (11 - 10.01) - 2; opens -50 at
        # 11 with the other 1: (-50 * 11 + 1) / -50
        ("-50", "10.98", "11", "97", "97"),
    ),
    "reversal short to long": (
        [("-100", "20", "1"), ("300", "18", "3")],
        "1",
        # closes 100 with 1: -100 * (18 - 19.99) - 1; opens 200 at 18 with 2
        ("200", "18.01", "18", "198", "198"),
    ),
    "reversal to short and back to flat": (
        [("100", "10", "0"), ("-150", "11", "0"), ("50", "9", "0")],
        "1",
        ("0", "0", "0", "200", "100"),
    ),
    "futures multiplier 50": (
        [("2", "6000.25", "4.5")],
        "50",
        # (2 * 6000.25 * 50 + 4.5) / 2: TWS's avgCost, times the multiplier
        ("2", "300014.75", "6000.25", "0", None),
    ),
    "futures partial close": (
        [("2", "6000.25", "4.5"), ("-1", "6010", "2.25")],
        "50",
        # 9.75 points * 50 - both commissions (2.25 + 2.25)
        ("1", "300014.75", "6000.25", "483", "483"),
    ),
    "futures short reversal": (
        [("-1", "6000", "2.25"), ("3", "5990", "6.75")],
        "50",
        # closes 1 with 2.25 of the 6.75: -(5990 * 50 - 299997.75) - 2.25 = 495.5;
        # opens 2 at 5990 with the other 4.5: (2 * 5990 * 50 + 4.5) / 2
        ("2", "299502.25", "5990", "495.5", "495.5"),
    ),
    "fractional quantities stay exact": (
        [("0.1", "1.1", "0"), ("0.2", "1.1", "0"), ("-0.3", "1.2", "0")],
        "1",
        ("0", "0", "0", "0.03", "0.03"),
    ),
    "average of three prices is exact": (
        [("1", "1", "0"), ("1", "2", "0"), ("1", "3", "0"), ("-1", "2", "0")],
        "1",
        ("2", "2", "2", "0", "0"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_position_arithmetic(name: str) -> None:
    fills, multiplier, expected = CASES[name]
    state = PositionState()
    realized: Decimal | None = None
    for quantity, price, commission in fills:
        effect = apply_fill(state, D(quantity), D(price), D(commission), D(multiplier))
        state, realized = effect.state, effect.realized
    quantity, avg_cost, avg_price, total, last = expected
    assert state.quantity == D(quantity)
    assert state.avg_cost == D(avg_cost)
    assert state.avg_price == D(avg_price)
    assert state.realized == D(total)
    assert realized == (D(last) if last is not None else None)
    assert state.commission == sum((D(c) for _, _, c in fills), D(0))


@pytest.mark.parametrize("name", list(CASES))
def test_the_ledger_gives_the_same_with_floats(name: str) -> None:
    fills, multiplier, expected = CASES[name]
    ledger = PositionLedger(float(multiplier))
    for index, (quantity, price, commission) in enumerate(fills):
        ledger.apply(float(quantity), float(price), float(commission), f"e{index}.01")
    assert ledger.state.quantity == D(expected[0])
    assert ledger.state.realized == D(expected[3])
    assert len(ledger.journal) == len(fills)


def test_floats_go_through_their_shortest_text() -> None:
    assert as_decimal(0.1) == D("0.1")
    assert as_decimal(3) == D(3)
    for bad in (float("nan"), float("inf"), True, "abc"):
        with pytest.raises(ValueError):
            as_decimal(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("quantity", "multiplier"), [(0, 1), (10, 0), (10, -50)], ids=["zero qty", "mult 0", "neg"]
)
def test_bad_fills_are_refused(quantity: int, multiplier: int) -> None:
    with pytest.raises(ValueError):
        apply_fill(PositionState(), quantity, 10, 0, multiplier)


def test_market_value_and_unrealized_follow_tws() -> None:
    state = apply_fill(PositionState(), 2, "6000.25", "4.5", 50).state
    assert state.market_value("6010", 50) == D("601000")
    assert state.unrealized("6010", 50) == D("601000") - D("600029.5")  # 970.5
    short = apply_fill(PositionState(), -100, 20, 1).state
    assert short.unrealized(19) == D(-1900) - D(-1999)  # +99


def test_a_correction_replays_the_fills() -> None:
    ledger = PositionLedger()
    ledger.apply(100, 10, 1, "aa.01.01")
    ledger.apply(-100, 12, 1, "bb.01.01")
    assert ledger.state.realized == D("198")  # 100 * (12 - 10.01) - 1
    delta = ledger.correct("aa.01.02", 100, 11, 1)
    assert delta == D(-100)
    assert ledger.state.realized == D("98")
    assert ledger.holds("aa.01.01") and ledger.holds("bb.01.01")
    assert ledger.correct("zz.01.02", 100, 11) is None  # not journaled: nothing replayed


def test_a_late_commission_replays_the_fills() -> None:
    ledger = PositionLedger()
    ledger.apply(100, 10, 0, "aa.01.01")
    assert ledger.set_commission("aa.01.01", 1) == D(0)
    assert ledger.state.avg_cost == D("10.01")
    assert ledger.set_commission("nope", 1) is None


def test_reset_keeps_realized_and_starts_a_new_journal() -> None:
    ledger = PositionLedger(50)
    ledger.apply(1, 6000, "2.25", "aa.01")
    ledger.apply(-1, 6001, "2.25", "bb.01")
    realized = ledger.state.realized
    state = ledger.reset(3, "300000")
    assert (state.quantity, state.avg_cost, state.avg_price) == (3, 300000, 6000)
    assert state.realized == realized
    assert ledger.journal == ()
    assert ledger.correct("aa.02", 1, 5000) is None  # the broker's figures hold it
    assert ledger.reset(0, 123).avg_cost == 0


def test_several_accounts_are_separate_ledgers() -> None:
    books = {("DU1", 265598): PositionLedger(), ("DU2", 265598): PositionLedger()}
    books[("DU1", 265598)].apply(100, 10, 1, "a.01")
    books[("DU2", 265598)].apply(-50, 11, 1, "b.01")
    assert books[("DU1", 265598)].state.quantity == 100
    assert books[("DU2", 265598)].state.quantity == -50


@pytest.mark.parametrize("symbol", ["AAPL", "ES"])
def test_matches_the_simulated_brokers_ledger_over_random_fills(symbol: str) -> None:
    """The sim books fills as TWS reports them; ibconn must agree (so reconciliation
    compares like with like), through partial closes and reversals."""
    instrument = next(i for i in DEFAULT_INSTRUMENTS if i.symbol == symbol)
    sim = Ledger(["DU1"])
    ours = PositionLedger(instrument.multiplier)
    rng = random.Random(7)
    for n in range(300):
        quantity = float(rng.choice([-3, -2, -1, 1, 2, 3]) * rng.choice([1, 10, 50]))
        price = round(instrument.start_price * (1 + rng.uniform(-0.05, 0.05)), 2)
        commission = round(abs(quantity) * 0.01 + 1, 2)
        sim_realized = sim.apply_fill("DU1", instrument, quantity, price, commission)
        effect = ours.apply(quantity, price, commission, f"x{n}.01")
        if sim_realized is None:
            assert effect.realized is None
        else:
            assert effect.realized is not None
            assert float(effect.realized) == pytest.approx(sim_realized, rel=1e-9, abs=1e-6)
        snap = sim.position("DU1", instrument.con_id, lambda _, p=price: p)
        assert snap is not None
        assert float(ours.state.quantity) == pytest.approx(snap.quantity, abs=1e-9)
        assert float(ours.state.avg_cost) == pytest.approx(snap.avg_cost, rel=1e-9)
        assert float(ours.state.realized) == pytest.approx(snap.realized_pnl, rel=1e-9, abs=1e-6)
