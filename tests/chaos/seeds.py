"""The chaos suite's seeds: the quick tier, the named regressions, the known failures."""

from __future__ import annotations

QUICK_SEEDS: tuple[int, ...] = ()
"""Run by every ``pytest`` (tests/chaos/test_chaos.py): seeds that cover every fault kind."""

REGRESSION_SEEDS: dict[int, str] = {}
"""Every seed that ever failed, with what it found. Each is a named test in test_chaos.py;
the ones still in KNOWN_FAILING are expected to fail (xfail, strict) until their fix lands."""

KNOWN_FAILING: dict[int, str] = {}
"""Seeds that fail today because of issue 16's items 1-10 (fixed on other branches).
Empty this as the fixes land; the long tier's exit status ignores these seeds."""
