"""What every client flow script and ``run.py`` share: the flow names, in order,
the failure type and the loop that runs the steps and prints a ``RESULT`` line each.

Standard library only: it is imported by flow scripts running in each client's own
virtualenv (the script's folder is on ``sys.path``) and by ``run.py``.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

FLOWS = [
    "connect",
    "contract details",
    "quotes",
    "tick-by-tick",
    "real-time bars",
    "historical bars",
    "limit order modify+cancel",
    "market order",
    "stop order modify+cancel",
    "trailing stop cancel",
    "executions+commissions",
    "positions",
    "account summary",
    "what-if",
    "reconnect",
]


class FlowFailed(Exception):
    """A flow's check did not hold."""


def run_steps(label: str, steps: Sequence[Callable[[], str]], connected: Callable[[], bool]) -> int:
    """Run one step per flow of ``FLOWS`` (same order); print ``RESULT`` lines; 1 if any failed."""
    if len(steps) != len(FLOWS):
        raise ValueError(f"{len(steps)} steps for {len(FLOWS)} flows")
    failed = 0
    for name, step in zip(FLOWS, steps, strict=True):
        if name != "connect" and not connected():
            print(f"RESULT {label} {name!r} FAIL not connected", flush=True)
            failed += 1
            continue
        try:
            detail = step()
        except Exception as exc:
            failed += 1
            traceback.print_exc(file=sys.stderr)
            print(f"RESULT {label} {name!r} FAIL {type(exc).__name__}: {exc}", flush=True)
        else:
            print(f"RESULT {label} {name!r} PASS {detail}", flush=True)
    return 1 if failed else 0
