"""The long tier of the chaos suite: many seeds in parallel worker processes.

    python -m tests.chaos.run --seeds 1000 --workers 2 [--start 1] [--show 5]
    python -m tests.chaos.run --seed 17 --seed 42      # particular seeds, full reports
    nox -s chaos -- --seeds 1000

Prints one line per failing seed, the full report (schedule and violations) of the
first ``--show`` failures, and a summary: seeds, violations by cause, faults by kind,
wall time. Exits with status 1 when a seed not listed in ``KNOWN_FAILING``
(``tests/chaos/seeds.py``: the seeds that fail today because of issue 16's open items,
each with its item; empty it as the fixes land) failed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from .harness import run_seed
from .seeds import KNOWN_FAILING

_CAUSES: tuple[tuple[str, str], ...] = (
    (r"never delivered", "fill missing from fills()"),
    (r"delivered \d+ times", "fill delivered twice by fills()"),
    (r"last delivered", "correction not applied on fills()"),
    (r"unknown to the gateway", "a fill or order the gateway does not know"),
    (r"placed twice|sent for .* after|holds \d+ orders", "order sent twice / order id reused"),
    (r"^positions", "positions differ from the gateway's"),
    (r"works at the gateway .* unknown here", "working order unknown to the connector"),
    (r"here, working at the gateway", "order final here, working at the gateway"),
    (r"here, \w+ at the gateway", "order status differs from the gateway's"),
    (r"filled .* here, .* at the gateway", "order quantity differs from the gateway's"),
    (r"order_updates\(\) left", "order_updates() not at the final status"),
    (r"position_updates\(\) left", "position_updates() not at the position"),
    (r"quotes did not resume", "quotes not resumed after a recovery"),
    (r"ended with", "a stream ended with an error"),
    (r"not CONNECTED|not connected", "supervisor not CONNECTED"),
    (r"unhandled in the event loop", "unhandled exception in the event loop"),
    (r"handler_errors", "an event handler raised"),
    (r"code 0", "OrderRejectedError with code 0"),
    (r" raised ", "unexpected exception from the API"),
    (r"did not finish", "seed time limit"),
)


def cause(violation: str) -> str:
    """A short name for the kind of a violation (the summary groups by it)."""
    for pattern, name in _CAUSES:
        if re.search(pattern, violation):
            return name
    return "other"


@dataclass(frozen=True)
class Outcome:
    seed: int
    ok: bool
    violations: tuple[str, ...]
    faults: dict[str, int]
    elapsed: float
    report: str


def _run_one(seed: int) -> Outcome:
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)  # expected connection noise
    result = asyncio.run(run_seed(seed))
    return Outcome(
        seed=seed,
        ok=result.ok,
        violations=tuple(result.violations),
        faults=dict(result.plan.faults),
        elapsed=result.elapsed,
        report=result.report(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    parser.add_argument("--start", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--seed", type=int, action="append", help="run this seed (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--show", type=int, default=3, help="full reports of this many failures")
    args = parser.parse_args(argv)
    seeds = args.seed or list(range(args.start, args.start + args.seeds))
    show = len(seeds) if args.seed else args.show
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for outcome in pool.map(_run_one, seeds, chunksize=1):
            outcomes.append(outcome)
            if not outcome.ok:
                known = " (known)" if outcome.seed in KNOWN_FAILING else ""
                causes = sorted({cause(v) for v in outcome.violations})
                print(f"seed {outcome.seed} FAILED{known}: {'; '.join(causes)}", flush=True)
                if show > 0:
                    show -= 1
                    print(outcome.report, flush=True)
    wall = time.monotonic() - started
    failed = [o for o in outcomes if not o.ok]
    by_cause: Counter[str] = Counter()
    seeds_by_cause: dict[str, list[int]] = {}
    faults: Counter[str] = Counter()
    for o in outcomes:
        faults.update(o.faults)
        for name in sorted({cause(v) for v in o.violations}):
            by_cause[name] += 1
            seeds_by_cause.setdefault(name, []).append(o.seed)
    unexpected = [o.seed for o in failed if o.seed not in KNOWN_FAILING]
    print()
    print(f"seeds: {len(outcomes)} ({seeds[0]}..{seeds[-1]}), workers {args.workers}")
    print(f"failed seeds: {len(failed)} ({len(unexpected)} not in KNOWN_FAILING)")
    print(f"violations: {sum(len(o.violations) for o in outcomes)}")
    for name, count in by_cause.most_common():
        listed = seeds_by_cause[name]
        more = f" ... (+{len(listed) - 12})" if len(listed) > 12 else ""
        print(f"  {count:5d} seeds  {name}: {listed[:12]}{more}")
    print(f"faults: {sum(faults.values())}")
    for name, count in sorted(faults.items()):
        print(f"  {count:5d}  {name}")
    seconds = [o.elapsed for o in outcomes]
    print(
        f"wall time: {wall:.0f} s; per seed: mean {sum(seconds) / len(seconds):.1f} s, "
        f"max {max(seconds):.1f} s"
    )
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
