"""Developer sessions: ``nox -s tests`` (one session per Python: ``tests-3.11``,
``tests-3.12``, ``tests-3.13``), ``nox -s lint``, ``nox -s typecheck``;
``nox -s ib_async_next`` (not run by default, allowed to fail) runs the suite against
ib_async's newest release and, when ``IB_ASYNC_SOURCE`` names a checkout or a git URL
of its main branch, against that source too;
``nox -s fuzz`` (not run by default) runs the fuzz suite's deep profile;
``nox -s chaos -- --seeds N`` (not run by default) runs the chaos suite's long tier;
``nox -s bench`` (not run by default) runs the benchmarks of ``docs/benchmarks.md``;
``nox -s clients`` (not run by default) runs foreign TWS clients against the simulator;
``nox -s exactly_once -- --seeds N`` (not run by default) repeats the bridge's
multi-process exactly-once test over seeds; ``nox -s bridge_bench`` (not run by default)
runs the bridge's fan-out benchmark (docs/bridge.md);
``nox -s docs`` builds the documentation site into docs/_build/html, warnings as errors."""

from __future__ import annotations

import os
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True


PYTHONS = ["3.11", "3.12", "3.13"]


def _pyenv_on_path() -> None:
    """Put pyenv's interpreters (``~/.pyenv/versions/3.1x.y/bin``) on PATH for nox.

    pyenv's shims answer ``python3.13`` with an error unless that version is
    selected, so nox would skip the session; the interpreters themselves work.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for version in PYTHONS:
        candidates = sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True)
        if candidates:
            found.append(str(candidates[0].parent))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_on_path()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite against the simulated gateway (on each supported Python)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "ibconn")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (docs/, Sphinx + MyST + furo) with warnings as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-j", "auto", "-W", "--keep-going", "-b", "html",
        "docs", "docs/_build/html", *session.posargs,
    )  # fmt: skip


@nox.session
def fuzz(session: nox.Session) -> None:
    """The property-based fuzz suite with the long ``deep`` hypothesis profile
    (tests/fuzz, docs/reliability.md); ``FUZZ_STATS=path`` writes its figures."""
    session.install("-e", ".[dev]")
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "3600", "tests/fuzz",
        *session.posargs, env={"FUZZ_PROFILE": "deep"},
    )  # fmt: skip


@nox.session
def bench(session: nox.Session) -> None:
    """The ingest, latency, memory, stream and order latency benchmarks
    (docs/benchmarks.md, docs/orders.md).

    Takes about 10 minutes on a 2-core VM; ``nox -s bench -- --quick`` runs
    one short repeat of each. Run it on a quiet machine: other load skews it.
    """
    session.install("-e", ".[bench,tui,metrics]")  # uvloop, Textual (dashboard), prometheus-client
    quick = "--quick" in session.posargs
    short = ["--repeats", "1"] if quick else []
    session.run(
        "python",
        "benchmarks/ingest.py",
        *short,
        *(["--count", "300000", "--tbt-count", "150000"] if quick else []),
    )
    session.run("python", "benchmarks/latency.py", *short, *(["--seconds", "3"] if quick else []))
    session.run("python", "benchmarks/memory.py", *(["--count", "300000"] if quick else []))
    session.run("python", "benchmarks/streams_cost.py", *short)
    session.run("python", "benchmarks/fanout.py", *short)
    session.run(  # the tui extra: Textual
        "python",
        "benchmarks/dashboard_cost.py",
        *short,
        *(["--steady-seconds", "3"] if quick else []),
    )
    session.run(
        "python", "benchmarks/metrics_cost.py", *short, *(["--count", "300001"] if quick else [])
    )
    session.run(
        "python",
        "benchmarks/order_latency.py",
        *(["--orders", "100", "--rounds", "1"] if quick else ["--orders", "300", "--rounds", "3"]),
    )
    session.run(
        "python",
        "benchmarks/order_latency.py",
        "--gateway",
        "process",
        *(["--orders", "100", "--rounds", "1"] if quick else ["--orders", "300", "--rounds", "3"]),
    )


@nox.session
def exactly_once(session: nox.Session) -> None:
    """The bridge's exactly-once test (tests/bridge/test_exactly_once.py, docs/bridge.md)
    over several seeds: ``nox -s exactly_once -- --seeds 5 [--start 100] [--downtime 60]``.

    Each seed is a new schedule (fault times, order pace, which consumer goes down) and a
    run of about 2 minutes; the session stops at the first failing seed and names it.
    """
    session.install("-e", ".[dev]")
    args = list(session.posargs)

    def option(name: str, default: str) -> str:
        return args[args.index(name) + 1] if name in args else default

    start, seeds = int(option("--start", "1")), int(option("--seeds", "5"))
    downtime = option("--downtime", "60")
    for seed in range(start, start + seeds):
        session.log(f"exactly-once, seed {seed}")
        session.run(
            "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "600",
            "tests/bridge/test_exactly_once.py",
            env={"EXACTLY_ONCE_SEED": str(seed), "EXACTLY_ONCE_DOWNTIME": downtime},
        )  # fmt: skip


@nox.session
def bridge_bench(session: nox.Session) -> None:
    """The bridge's quote fan-out benchmark (benchmarks/bridge_fanout.py, docs/bridge.md):
    delivered quotes/s and added latency for 1, 10 and 50 remote consumers; arguments pass
    through (``-- --consumers 1,10 --rate 1000``)."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/bridge_fanout.py", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The chaos suite's long tier (docs/reliability.md): seeded fault schedules in
    parallel worker processes, then a summary.

    ``nox -s chaos -- --seeds 1000 --workers 2`` (the default); any argument of
    ``python -m tests.chaos.run`` passes through (``--start``, ``--seed N``, ``--show``).
    """
    session.install("-e", ".[dev]")
    args = list(session.posargs)
    if "--seeds" not in args and "--seed" not in args:
        args += ["--seeds", "1000"]
    if "--workers" not in args:
        args += ["--workers", "2"]
    session.run("python", "-m", "tests.chaos.run", *args)


@nox.session
def clients(session: nox.Session) -> None:
    """Foreign TWS clients (ib_insync 0.9.86, ib_async 2.1, ibapi 10.50.2 and ibapi capped
    at version 176), each in its own virtualenv under ``.clients-venvs/``, run the same
    flows against ``python -m ibconn sim``; prints the client x flow table
    (docs/simulator.md) and fails on any failed flow. ``-- --only ib_insync`` picks clients.
    """
    session.install("-e", ".")
    session.run("python", "clients/run.py", *session.posargs)


@nox.session(python=PYTHONS[-1])
def ib_async_next(session: nox.Session) -> None:
    """The suite against ib_async's newest release, then its main branch source when at hand.

    Not run by default and allowed to fail: it tells what an ib_async upgrade breaks
    before users meet it (docs/architecture.md, "Dependencies"). The newest release is
    installed past the ``<2.2`` pin; ``IB_ASYNC_SOURCE`` (a local checkout, or a git URL
    such as ``git+https://github.com/ib-api-reloaded/ib_async@main``) adds a second run
    against that source. ``-- <pytest args>`` pass through.
    """
    session.install("-e", ".[dev]")
    targets = [("newest release", "ib_async")]
    source = os.environ.get("IB_ASYNC_SOURCE")
    if source:
        targets.append(("main branch", source))
    else:
        session.log("IB_ASYNC_SOURCE not set: only the newest release is tested")
    failed = []
    for label, requirement in targets:
        session.install("--upgrade", requirement)  # past the pin of pyproject.toml
        session.run("python", "-c", "import ib_async; print('ib_async', ib_async.__version__)")
        try:
            session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
        except CommandFailed:
            failed.append(label)
    if failed:
        session.error(f"the suite fails against ib_async's {' and '.join(failed)}")
