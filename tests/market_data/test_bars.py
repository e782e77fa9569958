"""Bar sizes, durations, request spans and the bar aggregator (no gateway needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ibconn.errors import InvalidInputError
from ibconn.market_data.bars import (
    HISTORICAL_BAR_SIZES,
    STREAM_BAR_SIZES,
    BarAggregator,
    max_request_span,
    parse_bar_size,
    parse_duration,
)
from ibconn.market_data.models import Bar, BarSource
from ibconn.market_data.validation import TickValidator, ValidationStats

T0 = 1_790_000_100.0  # a multiple of 60 (and of 5)


def rt(agg: BarAggregator, start: float, price: float, volume: float = 100.0) -> list[Bar] | None:
    """Feed one 5-second bar piece at ``start`` (offset from T0)."""
    return agg.add_bar(
        T0 + start, T0 + start + 5, price, price + 1, price - 1, price, volume, price, 2
    )


# -- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "seconds"),
    [
        ("5 secs", "5 secs", 5),
        ("5s", "5 secs", 5),
        ("30 seconds", "30 secs", 30),
        ("1 min", "1 min", 60),
        ("1min", "1 min", 60),
        ("1 mins", "1 min", 60),
        ("5 Minutes", "5 mins", 300),
        ("1h", "1 hour", 3600),
        ("60 mins", "1 hour", 3600),
    ],
)
def test_stream_bar_sizes_accept_common_spellings(text: str, name: str, seconds: int) -> None:
    assert parse_bar_size(text) == (name, seconds)


@pytest.mark.parametrize("text", ["7 secs", "1 secs", "2 hours", "1 day", "", "five mins", "5"])
def test_bad_stream_bar_sizes_say_what_is_allowed(text: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_bar_size(text)
    assert ", ".join(STREAM_BAR_SIZES) in str(info.value)


def test_historical_bar_sizes_are_wider() -> None:
    assert parse_bar_size("1 day", streaming=False) == ("1 day", 86_400)
    assert parse_bar_size("1 secs", streaming=False) == ("1 secs", 1)
    assert parse_bar_size("1 month", streaming=False)[0] == "1 month"
    assert set(STREAM_BAR_SIZES) < set(HISTORICAL_BAR_SIZES)
    assert all(3600 % seconds == 0 for seconds in STREAM_BAR_SIZES.values())


def test_durations() -> None:
    assert parse_duration("1 D") == (1, "D")
    assert parse_duration("3600 s") == (3600, "S")
    assert parse_duration(" 2 W ") == (2, "W")
    for bad in ["", "D", "0 D", "1 X", "1.5 D", "-1 D"]:
        with pytest.raises(InvalidInputError, match="'3600 S', '1 D'"):
            parse_duration(bad)


def test_request_spans_follow_ibs_limits() -> None:
    assert max_request_span(1) == 1800
    assert max_request_span(5) == 3600
    assert max_request_span(60) == 86_400
    assert max_request_span(300) == 7 * 86_400
    assert max_request_span(3600) == 30 * 86_400
    assert max_request_span(86_400) is None


# -- aggregation of 5-second bars ---------------------------------------------------------


def test_5_second_bars_pass_through_one_each() -> None:
    agg = BarAggregator("AAPL", 1, 5, BarSource.REALTIME)
    [bar] = rt(agg, 0, 10.0) or []
    assert bar.start == datetime.fromtimestamp(T0, UTC)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.count) == (
        10.0,
        11.0,
        9.0,
        10.0,
        100.0,
        2,
    )
    assert bar.wap == 10.0 and bar.source is BarSource.REALTIME and not bar.after_gap


def test_a_minute_is_emitted_once_when_its_last_piece_arrives() -> None:
    agg = BarAggregator("AAPL", 1, 60, BarSource.REALTIME)
    for k in range(11):
        assert rt(agg, 5 * k, 100.0 + k) == []
    [bar] = rt(agg, 55, 111.0) or []
    assert (bar.open, bar.close, bar.high, bar.low) == (100.0, 111.0, 112.0, 99.0)
    assert bar.volume == 1200.0 and bar.count == 24
    assert bar.wap == pytest.approx(sum(100.0 + k for k in range(12)) / 12)
    assert rt(agg, 55, 1.0) is None  # the same piece again: refused


def test_a_bar_seen_only_in_part_is_never_emitted() -> None:
    agg = BarAggregator("AAPL", 1, 60, BarSource.REALTIME)
    for k in range(3, 12):  # started 15 s into the minute
        assert rt(agg, 5 * k, 100.0) == []
    assert agg.skipped == 1
    bars = [bar for k in range(12, 24) for bar in rt(agg, 5 * k, 100.0) or []]
    assert len(bars) == 1 and bars[0].start.timestamp() == T0 + 60


def test_a_hole_inside_a_bar_makes_it_incomplete() -> None:
    agg = BarAggregator("AAPL", 1, 60, BarSource.REALTIME)
    out = [bar for k in range(12) if k != 6 for bar in rt(agg, 5 * k, 1.0) or []]
    assert out == [] and agg.skipped == 1


def test_a_gap_is_backfilled_after_a_rewind_and_flagged_on_the_next_bar() -> None:
    agg = BarAggregator("AAPL", 1, 60, BarSource.REALTIME)
    for k in range(12):
        rt(agg, 5 * k, 1.0)
    for k in range(12, 15):
        rt(agg, 5 * k, 2.0)
    agg.mark_gap()
    assert agg.rewind() == T0 + 60  # the minute in progress starts again
    history = [
        bar
        for k in range(12, 20)
        for bar in agg.add_bar(
            T0 + 5 * k, T0 + 5 * k + 5, 3.0, 3.0, 3.0, 3.0, 10.0, 3.0, 1, historical=True
        )
        or []
    ]
    assert history == []
    live = [bar for k in range(18, 24) for bar in rt(agg, 5 * k, 4.0) or []]  # 18, 19 overlap
    [bar] = live
    assert bar.after_gap and bar.source is BarSource.HISTORICAL
    assert (bar.open, bar.close) == (3.0, 4.0)
    [after] = [bar for k in range(24, 36) for bar in rt(agg, 5 * k, 5.0) or []]
    assert not after.after_gap and after.source is BarSource.REALTIME


def test_rewind_before_any_data_needs_no_backfill() -> None:
    assert BarAggregator("AAPL", 1, 60, BarSource.REALTIME).rewind() is None


# -- aggregation of trades ------------------------------------------------------------------


def test_trade_bars_skip_the_first_partial_bar_then_close_on_the_next_trade() -> None:
    agg = BarAggregator("AAPL", 1, 5, BarSource.TRADES)
    assert agg.add_trade(T0 + 2, 10.0, 100) == []  # joined in the middle of a bar
    assert agg.add_trade(T0 + 6, 11.0, 100) == []
    assert agg.add_trade(T0 + 7, 12.0, 300) == []
    [bar] = agg.add_trade(T0 + 10, 13.0, 100) or []
    assert agg.skipped == 1
    assert bar.start.timestamp() == T0 + 5
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.count) == (
        11.0,
        12.0,
        11.0,
        12.0,
        400.0,
        2,
    )
    assert bar.wap == pytest.approx((11.0 * 100 + 12.0 * 300) / 400)
    assert agg.add_trade(T0 + 9, 1.0, 1) is None  # before the last trade: refused


def test_quiet_intervals_become_flat_bars() -> None:
    agg = BarAggregator("AAPL", 1, 5, BarSource.TRADES)
    agg.add_trade(T0 + 1, 10.0, 1)
    agg.add_trade(T0 + 5, 11.0, 1)
    bars = agg.add_trade(T0 + 21, 12.0, 1) or []
    assert [b.start.timestamp() - T0 for b in bars] == [5, 10, 15]
    assert [(b.close, b.volume, b.count) for b in bars] == [
        (11.0, 1.0, 1),
        (11.0, 0.0, 0),
        (11.0, 0.0, 0),
    ]


def test_close_until_ends_trade_bars_on_the_clock() -> None:
    agg = BarAggregator("AAPL", 1, 5, BarSource.TRADES)
    agg.add_trade(T0 + 1, 10.0, 1)
    agg.add_trade(T0 + 5, 11.0, 1)
    assert agg.close_until(T0 + 9) == []
    [bar] = agg.close_until(T0 + 10)
    assert bar.close == 11.0
    flat = agg.close_until(T0 + 20)
    assert [b.start.timestamp() - T0 for b in flat] == [10, 15]
    assert agg.add_trade(T0 + 12, 9.0, 1) is None  # that bar was closed already


def test_a_gap_in_trades_skips_the_bar_unless_backfilled() -> None:
    agg = BarAggregator("AAPL", 1, 5, BarSource.TRADES)
    agg.add_trade(T0 + 1, 10.0, 1)
    agg.add_trade(T0 + 5, 11.0, 1)
    agg.mark_gap()
    assert agg.add_trade(T0 + 17, 12.0, 1) == []  # the bar of 5 is partial: skipped
    assert agg.add_trade(T0 + 21, 13.0, 1) == []  # the bar of 15 is partial too
    [bar] = agg.add_trade(T0 + 25, 14.0, 1) or []
    assert bar.start.timestamp() == T0 + 20 and bar.after_gap
    assert agg.skipped == 3


def test_midpoint_bars_have_no_volume() -> None:
    agg = BarAggregator("EUR.USD", 2, 5, BarSource.MIDPOINT)
    agg.add_trade(T0 + 1, 1.1, None)
    agg.add_trade(T0 + 6, 1.2, None)
    [bar] = agg.add_trade(T0 + 11, 1.3, None) or []
    assert (bar.volume, bar.wap, bar.count, bar.source) == (None, None, None, BarSource.MIDPOINT)


# -- validation rules ------------------------------------------------------------------------


def test_validation_rules_and_counters() -> None:
    stock = TickValidator("STK", crossed_tolerance=0.001)
    assert stock.price_ok(1.0) and not stock.price_ok(float("nan"))
    assert not stock.price_ok(float("inf")) and not stock.price_ok(-0.5)
    assert not stock.size_ok(-1.0) and not stock.size_ok(float("nan"))
    assert stock.is_no_market(-1.0, 100.0) and stock.is_no_market(10.0, 0.0)
    assert not stock.is_no_market(10.0, 100.0)
    assert stock.missing_price(-1.0) and not stock.missing_price(0.0)
    assert not stock.is_crossed(100.05, 100.0)  # within 0.1 % of the mid
    assert stock.is_crossed(100.2, 100.0)
    assert stock.in_order(10.0, 10.0) and not stock.in_order(9.0, 10.0)
    assert stock.stats() == ValidationStats(
        non_finite=3, negative=1, invalid_size=1, no_market=3, crossed=1, out_of_order=1
    )
    assert stock.stats().rejected == 6
    future = TickValidator("FUT")
    assert future.price_ok(-37.63) and not future.is_no_market(-1.0, 5.0)
    assert ValidationStats.total([stock.stats(), stock.stats()]).crossed == 2
