"""The pacer's counting primitives (ibconn/pacing/windows.py): window log and smoother."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibconn.pacing import (
    Spacer,
    WindowLog,
)

pytestmark = pytest.mark.timeout(30)


# -- the primitives ------------------------------------------------------------------


def test_window_log_admits_limit_then_names_the_time_of_the_next_slot() -> None:
    log = WindowLog(3, 1.0)
    for t in (0.0, 0.1, 0.2):
        assert log.has_room(t)
        log.record(t)
    assert not log.has_room(0.5)
    assert log.next_free(0.5) == 1.0  # the event at 0.0 leaves the window (0, 1] at 1.0
    assert log.has_room(1.0)
    assert log.next_free(0.5, weight=2) == pytest.approx(1.1)
    assert log.count(1.05) == 2
    with pytest.raises(ValueError):
        log.next_free(0.0, weight=4)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 8),
    window=st.floats(0.1, 2.0),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=120),
)
def test_window_log_never_lets_a_window_hold_more_than_its_limit(
    limit: int, window: float, gaps: list[float]
) -> None:
    log, sent, now = WindowLog(limit, window), [], 0.0
    for gap in gaps:  # a sender that tries at arbitrary times and waits when told to
        now += gap
        now = log.next_free(now)
        log.record(now)
        sent.append(now)
    for i, t in enumerate(sent):
        inside = [s for s in sent[: i + 1] if s + window > t]
        assert len(inside) <= limit


def test_spacer_allows_a_burst_then_spaces_events() -> None:
    spacer = Spacer(rate=10, burst=3)
    for _ in range(3):
        assert spacer.next_free(0.0) == 0.0
        spacer.record(0.0)
    assert spacer.next_free(0.0) == pytest.approx(0.1)
    spacer.record(0.1)
    assert spacer.next_free(0.1) == pytest.approx(0.2)
