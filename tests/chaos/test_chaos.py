"""The chaos suite's quick tier, its named regression seeds, and proof that it can fail.

The long tier is ``python -m tests.chaos.run --seeds 1000`` (``nox -s chaos``); see
docs/reliability.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ibconn import IBConnector
from ibconn.connection import supervisor
from ibconn.connection.session import Session
from ibconn.market_data.service import MarketDataService
from ibconn.orders.handoff import Handoff
from ibconn.orders.models import Fill

from .harness import FAULTS, FIRST_FAULTS, LATER_FAULTS, draw_plan, run_seed
from .seeds import FOUND_BEFORE_LATER_FAULTS, QUICK_SEEDS, REGRESSION_SEEDS

pytestmark = pytest.mark.timeout(90)


@pytest.mark.parametrize("seed", QUICK_SEEDS, ids=lambda s: f"seed-{s}")
async def test_quick_tier_seed_keeps_every_invariant(seed: int) -> None:
    result = await run_seed(seed)
    assert result.ok, result.report()


@pytest.mark.parametrize("seed", list(REGRESSION_SEEDS), ids=lambda s: f"seed-{s}")
async def test_regression_seed_keeps_every_invariant(seed: int) -> None:
    faults = FIRST_FAULTS if seed in FOUND_BEFORE_LATER_FAULTS else FAULTS
    result = await run_seed(seed, faults=faults)
    assert result.ok, result.report()


def test_the_quick_tier_covers_every_fault_kind() -> None:
    drawn = set()
    for seed in QUICK_SEEDS:
        drawn |= set(draw_plan(seed).faults)
    assert drawn == set(FAULTS), f"not covered: {sorted(set(FAULTS) - drawn)}"


def test_later_fault_kinds_leave_the_other_steps_of_older_plans_alone() -> None:
    substituted = 0
    for seed in range(1, 300):
        old, new = draw_plan(seed, faults=FIRST_FAULTS), draw_plan(seed)
        assert len(old.steps) == len(new.steps)
        for before, after in zip(old.steps, new.steps, strict=True):
            assert before.seed == after.seed
            if set(after.ops) & set(LATER_FAULTS):
                substituted += 1
            else:
                assert before == after, seed
    assert substituted  # and the later kinds are drawn


def test_a_seed_alone_reproduces_its_plan() -> None:
    assert draw_plan(7) == draw_plan(7)
    assert draw_plan(7) != draw_plan(8)
    assert all(draw_plan(s).faults for s in range(1, 50))  # every seed has a fault


# -- the harness catches a broken product -------------------------------------------------


def _break_fills(mode: str) -> Any:
    """Make the connector's fills() drop or duplicate its first fill."""

    def hook(connector: IBConnector) -> None:
        fanout = connector.order_service._fills
        publish = fanout.publish
        seen: list[Fill] = []

        def broken(fill: Fill, *targets: Any) -> None:
            seen.append(fill)
            if len(seen) == 1:
                if mode == "drop":
                    return
                publish(fill, *targets)
            publish(fill, *targets)

        fanout.publish = broken  # type: ignore[method-assign]

    return hook


async def test_the_harness_reports_a_dropped_fill() -> None:
    result = await run_seed(3, faults=(), steps=4, on_connector=_break_fills("drop"))
    assert not result.ok
    assert any("never delivered by fills()" in v for v in result.violations), result.report()
    report = result.report()
    assert "FAILED" in report and "#0 marketable_limit" in report and "violated:" in report


async def test_the_harness_reports_a_duplicated_fill() -> None:
    result = await run_seed(3, faults=(), steps=4, on_connector=_break_fills("duplicate"))
    assert any("delivered 2 times by fills()" in v for v in result.violations), result.report()


async def test_the_harness_reports_a_skipped_resubscription(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ready = MarketDataService.on_session_ready

    async def without_resubscribing(self: MarketDataService, ib: Any, session: Session) -> None:
        if session.generation > 1:  # after a reconnect: as if no data had been lost
            session = dataclasses.replace(session, data_lost=False)
        await ready(self, ib, session)

    monkeypatch.setattr(MarketDataService, "on_session_ready", without_resubscribing)
    result = await run_seed(3, faults=("drop",), steps=6)
    assert any("quotes did not resume after recovery from drop" in v for v in result.violations), (
        result.report()
    )


async def test_an_unbroken_product_passes_the_same_runs() -> None:
    for faults, steps in (((), 4), (("drop",), 6)):
        result = await run_seed(3, faults=faults, steps=steps)
        assert result.ok, result.report()


async def test_quotes_are_checked_after_the_reconnect_that_follows_an_incomplete_sync() -> None:
    # step #2: a start-up sync timeout with an order in flight at the drop, next to a
    # marketable limit whose queued place the drop discards (so the in-flight place
    # returns before the supervisor noticed the drop). The failed attempt alone takes
    # 2 x connection_timeout: the 3 s quote window must open only once the drop was
    # noticed and a complete session is CONNECTED again.
    result = await run_seed(10, faults=("start_up_sync_timeout",), steps=4)
    assert "#2 start_up_sync_timeout + marketable_limit" in result.report()
    assert result.recoveries == 2 and result.ok, result.report()


def _break_handoff(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Make the order path's handoff drop, or run twice, every item it holds for the caller."""
    later = Handoff.later

    def broken(self: Handoff, callback: Any, *args: Any) -> None:
        if self.held:
            if mode == "drop":
                return
            later(self, callback, *args)
        later(self, callback, *args)

    monkeypatch.setattr(Handoff, "later", broken)


async def test_the_harness_reports_a_handoff_that_drops_what_it_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _break_handoff(monkeypatch, "drop")
    result = await run_seed(3, faults=(), steps=4)
    # the acknowledgement's update was dropped: the stream left the order behind
    assert any(v.startswith("order_updates() ") for v in result.violations), result.report()


async def test_the_harness_reports_a_handoff_that_runs_what_it_held_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _break_handoff(monkeypatch, "twice")
    result = await run_seed(3, faults=(), steps=4)
    assert any("delivered an update of" in v and "twice" in v for v in result.violations), (
        result.report()
    )


async def test_the_harness_reports_a_heartbeat_that_trusts_a_stream_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heartbeat = supervisor.heartbeat

    async def trusting(*args: Any, **kwargs: Any) -> None:
        await heartbeat(*args, **{**kwargs, "flood_timeout": float("inf")})

    monkeypatch.setattr(supervisor, "heartbeat", trusting)
    result = await run_seed(1007, faults=("requests_frozen_while_streaming",), steps=4)
    assert "requests_frozen_while_streaming" in result.plan.faults
    assert any("answered no request" in v for v in result.violations), result.report()
