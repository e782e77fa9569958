"""A remote copy of the bridge's orders or positions: the KV snapshot plus the newer events.

:class:`SequencedView` holds one stream's state as the bridge last described it
(a :class:`Snapshot`: epoch, the stream's last seq it reflects, the items) and the
events published after it. Events arrive with the bridge's ``(epoch, seq)``:

* the next seq of the current epoch is applied and delivered;
* a seq already delivered is skipped (a redelivery never counts twice);
* a gap in the seqs, or a new epoch, means events were missed: the view holds
  what arrives until :meth:`SequencedView.load` is given a snapshot of that
  epoch, then delivers and applies only the held events newer than the snapshot.

:class:`ExecIdSet` is the fill consumer's memory of the exec ids it delivered,
bounded to the executions of the last two days.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Generic, TypeVar

__all__ = ["ExecIdSet", "SequencedView", "Snapshot"]

E = TypeVar("E")  # an event of the stream
R = TypeVar("R")  # an item of the state
K = TypeVar("K", bound=Hashable)

MAX_PENDING = 100_000
"""Events kept past the last snapshot; more (no snapshot for that long) forces a resync."""


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[K, R]):
    """The bridge's state of one stream: ``items`` as of ``seq`` of ``epoch``."""

    epoch: str
    seq: int
    items: Mapping[K, R]


class SequencedView(Generic[K, R, E]):
    """One stream's state kept in step with the bridge by ``(epoch, seq)``; see the module."""

    def __init__(self, stream: str, fold: Callable[[dict[K, R], E], None]) -> None:
        self.stream = stream
        self._fold = fold
        self._epoch: str | None = None
        self._delivered = 0  # the last seq handed to the consumers, in _epoch
        self._base: Snapshot[K, R] | None = None
        self._pending: list[tuple[int, E]] = []  # applied events newer than _base
        self._synced = False
        self._held: list[tuple[str, int, E]] = []  # events waiting for a resync
        self.resyncs = 0
        self.stale = 0

    @property
    def synced(self) -> bool:
        """Whether the view follows the stream (False: waiting for a snapshot)."""
        return self._synced

    @property
    def epoch(self) -> str | None:
        """The bridge epoch the view follows."""
        return self._epoch

    @property
    def last_seq(self) -> int:
        """The last seq delivered (or reflected by the loaded snapshot)."""
        return self._delivered

    def offer(self, epoch: str, seq: int, event: E) -> list[E]:
        """Take one event from the stream; return the events to deliver now (in order)."""
        if not self._synced:
            self._hold(epoch, seq, event)
            return []
        if epoch == self._epoch:
            if seq <= self._delivered:
                self.stale += 1
                return []
            if seq == self._delivered + 1:
                self._apply(seq, event)
                return [event]
        self.need_resync()
        self._hold(epoch, seq, event)
        return []

    def need_resync(self) -> None:
        """Stop delivering until a snapshot is loaded (a gap, a new epoch, a lost link)."""
        if self._synced:
            self._synced = False
            self.resyncs += 1

    def _hold(self, epoch: str, seq: int, event: E) -> None:
        if self._held and self._held[-1][0] != epoch:
            self._held.clear()  # a later epoch's events follow: the earlier ones are past
        self._held.append((epoch, seq, event))
        if len(self._held) > MAX_PENDING:
            del self._held[0]

    def load(self, snapshot: Snapshot[K, R]) -> list[E]:
        """Take a snapshot; when it syncs the view, return the held events newer than it.

        While in step, a snapshot of the current epoch only replaces the base of
        the state (the delivery cursor does not move). While waiting, a snapshot
        of the held events' epoch (or any, when nothing is held) syncs the view:
        the held events at or below its seq are dropped (the snapshot reflects
        them), the newer ones are applied and returned.
        """
        if self._synced:
            if snapshot.epoch == self._epoch:
                self._rebase(snapshot)
            else:
                self.need_resync()
            if self._synced:
                return []
        held_epoch = self._held[-1][0] if self._held else snapshot.epoch
        if snapshot.epoch != held_epoch:
            return []  # the snapshot is behind the events: wait for the next one
        if snapshot.epoch != self._epoch:
            self._epoch = snapshot.epoch
            self._delivered = 0
        self._base = snapshot
        self._pending = []
        self._delivered = max(self._delivered, snapshot.seq)
        self._synced = True
        out: list[E] = []
        for _, seq, event in self._held:
            if seq > self._delivered:
                self._apply(seq, event)
                out.append(event)
            else:
                self.stale += 1
        self._held = []
        return out

    def _rebase(self, snapshot: Snapshot[K, R]) -> None:
        if self._base is not None and snapshot.seq < self._base.seq:
            return  # an older snapshot than the one held
        self._base = snapshot
        self._pending = [(seq, event) for seq, event in self._pending if seq > snapshot.seq]

    def _apply(self, seq: int, event: E) -> None:
        self._delivered = seq
        if self._base is None or seq > self._base.seq:
            self._pending.append((seq, event))
            if len(self._pending) > MAX_PENDING:
                self.need_resync()

    def items(self) -> dict[K, R]:
        """The state: the snapshot's items with every newer event folded in."""
        state: dict[K, R] = dict(self._base.items) if self._base is not None else {}
        for _, event in self._pending:
            self._fold(state, event)
        return state


class ExecIdSet:
    """The exec ids already delivered, kept for the day of their fill and the day before."""

    def __init__(self) -> None:
        self._days: dict[date, set[str]] = {}

    def add(self, exec_id: str, day: date) -> bool:
        """Remember ``exec_id``; ``False`` when it was already there (a duplicate)."""
        if exec_id in self:
            return False
        self._days.setdefault(day, set()).add(exec_id)
        newest = max(self._days)
        for old in [d for d in self._days if d < newest - timedelta(days=1)]:
            del self._days[old]
        return True

    def __contains__(self, exec_id: object) -> bool:
        return any(exec_id in ids for ids in self._days.values())

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._days.values())

    def update(self, pairs: Iterable[tuple[str, date]]) -> None:
        """Remember several ids."""
        for exec_id, day in pairs:
            self.add(exec_id, day)
