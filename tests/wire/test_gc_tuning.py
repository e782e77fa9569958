"""Opt-in GC tuning: off by default, reversible, nested, applied by the connector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ibconn import IBConnector, gc_state, restore_gc, tune_gc_for_streaming
from ibconn.config.settings import ConnectorSettings
from ibconn.sim import SimulatedGateway
from ibconn.wire.gc_tuning import INTERPRETER_FROZEN
from ibconn.wire.receive import fast_receive_installed


def _unfrozen() -> set[int]:
    """The freeze counts after ibconn's unfreeze: none, or the interpreter's own
    (``gc.unfreeze`` releases those too; Python 3.12.1 starts with a few hundred)."""
    return {0, INTERPRETER_FROZEN} if INTERPRETER_FROZEN else {0}


@pytest.fixture(autouse=True)
def _restored() -> Iterator[None]:
    """Whatever a test does, the process leaves it with the collector as it found it."""
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    yield
    while gc_state().tuned:
        restore_gc()
    assert gc.get_threshold() == thresholds
    if frozen == INTERPRETER_FROZEN:
        assert gc.get_freeze_count() in _unfrozen()
    else:
        assert gc.get_freeze_count() == frozen


def test_off_by_default() -> None:
    assert ConnectorSettings().tune_gc is False
    state = gc_state()
    assert not state.tuned
    assert state.holders == 0


def test_tune_and_restore_put_the_thresholds_back() -> None:
    before = gc.get_threshold()
    tune_gc_for_streaming(40_000)
    state = gc_state()
    assert state.tuned
    assert state.thresholds == (40_000, before[1], before[2])
    assert state.frozen > 0
    restore_gc()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() in _unfrozen()
    assert not gc_state().tuned


def test_calls_nest_and_the_last_restore_wins() -> None:
    before = gc.get_threshold()
    tune_gc_for_streaming()
    tune_gc_for_streaming(1_000_000)  # a second holder: the first settings stay
    assert gc.get_threshold()[0] == 50_000
    restore_gc()
    assert gc_state().tuned
    restore_gc()
    assert gc.get_threshold() == before
    restore_gc()  # nothing pending: a no-op
    assert gc.get_threshold() == before


def test_without_freeze_and_never_below_the_current_threshold() -> None:
    before = gc.get_threshold()
    tune_gc_for_streaming(10, freeze=False)
    assert gc.get_threshold()[0] == before[0]
    assert gc.get_freeze_count() <= INTERPRETER_FROZEN
    restore_gc()
    with pytest.raises(ValueError, match="threshold0"):
        tune_gc_for_streaming(0)


def test_objects_the_application_froze_stay_frozen() -> None:
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        tune_gc_for_streaming()
        restore_gc()
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


async def test_the_connector_applies_it_after_connect_and_undoes_it_on_disconnect() -> None:
    before = gc.get_threshold()
    async with SimulatedGateway(port=0) as gw:
        connector = IBConnector("127.0.0.1", gw.port, 11, reconnect_attempts=1, tune_gc=True)
        await connector.connect()
        assert gc_state().tuned
        assert fast_receive_installed(connector.ib)  # fast_receive is on by default
        await connector.connect()  # already connected: no second holder
        assert gc_state().holders == 1
        await connector.disconnect()
        assert not gc_state().tuned
        assert gc.get_threshold() == before


async def test_the_connector_leaves_gc_alone_by_default_and_can_skip_the_receive_path() -> None:
    before = gc.get_threshold()
    async with SimulatedGateway(port=0) as gw:
        connector = IBConnector("127.0.0.1", gw.port, 12, reconnect_attempts=1, fast_receive=False)
        async with connector:
            assert not gc_state().tuned
            assert gc.get_threshold() == before
            assert not fast_receive_installed(connector.ib)
            assert connector.accounts  # the handshake went through ib_async's own path
