"""The remote's view of orders and positions kept in step by (epoch, seq), and its exec ids."""

from __future__ import annotations

from datetime import date

from ibconn.bridge.remote_state import ExecIdSet, SequencedView, Snapshot


def _sum(state: dict[str, int], event: tuple[str, int]) -> None:
    key, amount = event
    state[key] = state.get(key, 0) + amount


def synced(
    epoch: str = "a", seq: int = 0, **items: int
) -> SequencedView[str, int, tuple[str, int]]:
    view: SequencedView[str, int, tuple[str, int]] = SequencedView("positions", _sum)
    assert view.load(Snapshot(epoch, seq, items)) == []
    assert view.synced
    return view


def test_the_next_seq_is_delivered_and_folded_into_the_snapshot() -> None:
    view = synced(seq=5, x=1)
    assert view.offer("a", 6, ("x", 2)) == [("x", 2)]
    assert view.offer("a", 7, ("y", 3)) == [("y", 3)]
    assert view.items() == {"x": 3, "y": 3}
    assert view.last_seq == 7


def test_a_seq_already_delivered_is_skipped_and_never_counted_twice() -> None:
    view = synced(seq=5)
    view.offer("a", 6, ("x", 2))
    assert view.offer("a", 6, ("x", 2)) == []
    assert view.offer("a", 4, ("x", 2)) == []
    assert view.items() == {"x": 2}
    assert view.stale == 2


def test_a_gap_holds_events_until_a_snapshot_then_delivers_only_newer_ones() -> None:
    view = synced(seq=5, x=1)
    assert view.offer("a", 8, ("x", 10)) == []  # 6 and 7 were missed
    assert not view.synced
    assert view.offer("a", 9, ("x", 100)) == []
    # the bridge's snapshot reflects up to 8: only 9 is newer
    assert view.load(Snapshot("a", 8, {"x": 50})) == [("x", 100)]
    assert view.synced
    assert view.items() == {"x": 150}
    assert view.resyncs == 1


def test_a_new_epoch_resyncs_from_that_epochs_snapshot_and_restarts_the_seqs() -> None:
    view = synced(seq=40, x=1)
    assert view.offer("b", 1, ("x", 5)) == []
    assert view.load(Snapshot("a", 41, {"x": 2})) == []  # the old epoch's snapshot: wait
    assert not view.synced
    assert view.offer("b", 2, ("x", 7)) == []
    assert view.load(Snapshot("b", 1, {"x": 9})) == [("x", 7)]
    assert view.epoch == "b"
    assert view.items() == {"x": 16}
    assert view.offer("b", 3, ("x", 1)) == [("x", 1)]


def test_a_later_snapshot_while_in_step_rebases_without_moving_the_delivery_cursor() -> None:
    view = synced(seq=1, x=1)
    view.offer("a", 2, ("x", 1))
    assert view.load(Snapshot("a", 3, {"x": 7})) == []  # 3 is still on its way
    assert view.offer("a", 3, ("x", 5)) == [("x", 5)]  # delivered, already in the base
    assert view.items() == {"x": 7}
    assert view.offer("a", 4, ("x", 1)) == [("x", 1)]
    assert view.items() == {"x": 8}


def test_a_snapshot_of_a_new_epoch_while_in_step_switches_to_it() -> None:
    view = synced(seq=9, x=1)
    assert view.load(Snapshot("b", 0, {"x": 3})) == []
    assert view.synced and view.epoch == "b" and view.last_seq == 0
    assert view.offer("b", 1, ("x", 1)) == [("x", 1)]
    assert view.items() == {"x": 4}


def test_exec_ids_are_remembered_for_their_day_and_the_day_before_only() -> None:
    ids = ExecIdSet()
    assert ids.add("e1", date(2026, 1, 5))
    assert not ids.add("e1", date(2026, 1, 5))
    assert ids.add("e2", date(2026, 1, 6))
    assert "e1" in ids
    ids.add("e3", date(2026, 1, 7))
    assert "e1" not in ids and "e2" in ids and "e3" in ids
    assert len(ids) == 2
