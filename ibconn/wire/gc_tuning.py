"""Opt-in garbage-collector tuning for heavy tick-by-tick streams.

Why: every tick-by-tick message makes several small container objects
(ib_async's ``TickAttribLast`` and ``TickByTickAllLast``, ibconn's
``Trade``, the field lists) that live until the end of the TCP read. With the
default thresholds (700, 10, 10) the collector runs a young collection every
700 allocations, promotes those short-lived objects, and soon runs full
collections that walk every object of the process. Measured on a 2-core VM,
that costs ib_async about two thirds of its tick-by-tick throughput
(``tws-protocol.md`` section 8; ``docs/benchmarks.md``).

What :func:`tune_gc_for_streaming` does:

1. ``gc.collect()`` once, then ``gc.freeze()``: every object alive now
   (modules, ib_async, the connection, the contract cache) moves to the
   permanent generation, which later collections never walk;
2. raises the young-generation threshold (default 50 000 allocations
   instead of 700), so young collections are rarer and short-lived tick
   objects are usually freed by reference counting before one runs.

The trade-off, and why it is off by default:

* it is **process-wide**: it changes the collector for the whole program,
  not only for ibconn;
* **memory is held longer**: frozen objects that later become garbage in a
  reference cycle are not freed until :func:`restore_gc`, and cyclic garbage
  made while streaming waits for a rarer collection (up to ``threshold0``
  objects, a few MB);
* **pauses are rarer but longer**: a young collection walks up to
  ``threshold0`` objects (about 1-3 ms at 50 000) instead of 700 (tens of µs).
  A latency-sensitive program that streams little should keep the default.

Enable it with the ``tune_gc`` setting (applied after the first connect,
undone by ``disconnect()``) or call the functions yourself. Calls nest: each
:func:`tune_gc_for_streaming` needs one :func:`restore_gc`, and the original
thresholds come back with the last one.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

__all__ = ["GcState", "gc_state", "restore_gc", "tune_gc_for_streaming"]

DEFAULT_THRESHOLD0 = 50_000

INTERPRETER_FROZEN = gc.get_freeze_count()
"""The permanent generation's size when ibconn was imported: the interpreter's own.

Python 3.11 and 3.13 start with 0; 3.12.1 reports a few hundred objects it froze
itself. Only a count above this means the application froze objects first."""


@dataclass(frozen=True, slots=True)
class GcState:
    """The collector's settings as ibconn sees them."""

    tuned: bool
    """Whether :func:`tune_gc_for_streaming` is in effect."""
    thresholds: tuple[int, int, int]
    """``gc.get_threshold()``."""
    frozen: int
    """``gc.get_freeze_count()``: objects in the permanent generation."""
    holders: int
    """How many :func:`tune_gc_for_streaming` calls wait for their :func:`restore_gc`."""


class _Tuning:
    """What :func:`tune_gc_for_streaming` changed, to undo it."""

    saved: tuple[int, int, int] | None = None
    froze = False
    holders = 0


_tuning = _Tuning()


def tune_gc_for_streaming(threshold0: int = DEFAULT_THRESHOLD0, *, freeze: bool = True) -> None:
    """Tune the collector for heavy streams: freeze what is alive, raise ``threshold0``.

    Process-wide and opt-in: read this module's docstring for the trade-off.
    A nested call (say, a second connector) only counts; the first call's
    settings stay until the last :func:`restore_gc`.
    """
    if threshold0 < 1:
        raise ValueError(f"threshold0 must be at least 1, got {threshold0}")
    _tuning.holders += 1
    if _tuning.saved is not None:
        return
    saved = _tuning.saved = gc.get_threshold()
    if freeze:
        # Unfreeze later only what we froze: an application that froze first keeps its own.
        _tuning.froze = gc.get_freeze_count() <= INTERPRETER_FROZEN
        gc.collect()
        gc.freeze()
    gc.set_threshold(max(threshold0, saved[0]), saved[1], saved[2])


def restore_gc() -> None:
    """Undo one :func:`tune_gc_for_streaming`; the last one restores the original settings.

    Unfreezes what was frozen (it becomes collectable again; not when the
    application had frozen objects itself before) and puts the original
    thresholds back. Without a pending tuning it does nothing.
    """
    saved = _tuning.saved
    if saved is None:
        return
    _tuning.holders -= 1
    if _tuning.holders > 0:
        return
    gc.set_threshold(*saved)
    if _tuning.froze:
        gc.unfreeze()
    _tuning.saved = None
    _tuning.froze = False
    _tuning.holders = 0


def gc_state() -> GcState:
    """The collector's current settings and whether ibconn's tuning is in effect."""
    return GcState(
        tuned=_tuning.saved is not None,
        thresholds=gc.get_threshold(),
        frozen=gc.get_freeze_count(),
        holders=_tuning.holders,
    )
