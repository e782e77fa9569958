"""Run foreign TWS API clients' flows against ``python -m ibconn sim`` (``nox -s clients``).

Each client lives in its own virtualenv under ``.clients-venvs/`` (created once,
reused while its package pins do not change): ib_insync and ib_async both
install ``eventkit``, and two official clients both install ``ibapi``. ib_async
runs in the interpreter that runs this script (the project's environment).

Every client gets a fresh gateway process (``python -m ibconn sim --port 0``),
runs its flow script, and reports one ``RESULT`` line per flow. The script
prints the ``client x flow`` table (Markdown) and exits 1 when any flow failed
or did not report. Uses only the standard library.

    python clients/run.py                       # every client
    python clients/run.py --only ib_insync      # clients whose name contains this
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # also when loaded by path (tests/test_clients.py)
    sys.path.insert(0, str(HERE))

from flow_common import FLOWS  # noqa: E402

VENVS = ROOT / ".clients-venvs"

SIM_SETTINGS = """\
tick_rate: 20
clock_speed: 20
fill_delay: 0.02
"""
"""The gateway's settings for the flows: 20x simulated time so a 5-second bar takes 0.25 s."""


_RESULT = re.compile(
    r"^RESULT (?P<client>.+?) '(?P<flow>[^']+)' (?P<ok>PASS|FAIL) ?(?P<detail>.*)$"
)


@dataclass(frozen=True)
class Client:
    """One foreign client: where it is installed and how its flow runs."""

    name: str
    script: str
    args: tuple[str, ...]
    packages: tuple[str, ...] = ()
    """pip requirements of its own virtualenv; empty: run in this interpreter."""
    note: str = ""

    @property
    def venv(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", self.name).strip("-")
        return VENVS / slug


CLIENTS: tuple[Client, ...] = (
    Client("ib_insync 0.9.86", "flow_insync.py", ("--lib", "ib_insync"), ("ib_insync==0.9.86",)),
    Client("ib_async 2.1", "flow_insync.py", ("--lib", "ib_async")),
    Client("ibapi 10.50.2", "flow_ibapi.py", (), ("ibapi-stable==10.50.2",)),
    Client(
        "ibapi 10.37.2 capped at 176",
        "flow_ibapi.py",
        ("--max-version", "176"),
        ("ibapi-stable==10.37.2",),
        note="stands in for 10.19 (not on PyPI): announces v100..176",
    ),
)


@dataclass
class Outcome:
    """What one client's run reported."""

    client: Client
    results: dict[str, tuple[bool, str]] = field(default_factory=dict)
    log: str = ""

    @property
    def ok(self) -> bool:
        return all(self.results.get(flow, (False, ""))[0] for flow in FLOWS)


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(client: Client) -> Path:
    """The client's interpreter, creating and installing its virtualenv when needed."""
    if not client.packages:
        return Path(sys.executable)
    venv = client.venv
    marker = venv / ".installed"
    wanted = "\n".join(client.packages)
    if marker.exists() and marker.read_text() == wanted and _python(venv).exists():
        return _python(venv)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *client.packages],
        check=True,
    )  # fmt: skip
    marker.write_text(wanted)
    return _python(venv)


def _start_sim(settings: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ibconn", "sim", "--port", "0", "--config", str(settings),
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.match(r"LISTENING 127\.0\.0\.1:(\d+)", line)
    if not match:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the gateway did not start: {line!r}")
    return proc, int(match.group(1))


def _stop_sim(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_client(client: Client, timeout: float = 120.0) -> Outcome:
    """Install (if needed) and run one client's flows against a fresh gateway process."""
    outcome = Outcome(client)
    python = ensure_venv(client)
    with tempfile.TemporaryDirectory(prefix="ibconn-clients-") as tmp:
        settings = Path(tmp) / "sim.yaml"
        settings.write_text(SIM_SETTINGS)
        proc, port = _start_sim(settings)
        try:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            flow = subprocess.run(
                [str(python), str(HERE / client.script), "--port", str(port),
                 "--label", client.name, *client.args],
                check=False,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=tmp,
            )  # fmt: skip
            outcome.log = flow.stdout + flow.stderr
        except subprocess.TimeoutExpired as exc:
            outcome.log = f"timed out after {timeout} s\n{exc.stdout or ''}{exc.stderr or ''}"
        finally:
            _stop_sim(proc)
    for line in outcome.log.splitlines():
        match = _RESULT.match(line)
        if match and match.group("client") == client.name:
            outcome.results[match.group("flow")] = (
                match.group("ok") == "PASS",
                match.group("detail"),
            )
    return outcome


def table(outcomes: list[Outcome]) -> str:
    """The ``client x flow`` table in Markdown."""
    head = "| flow | " + " | ".join(o.client.name for o in outcomes) + " |"
    rule = "|---|" + "---|" * len(outcomes)
    rows = [head, rule]
    for flow in FLOWS:
        cells = []
        for o in outcomes:
            ok, _ = o.results.get(flow, (False, "no result"))
            cells.append("pass" if ok else "**FAIL**")
        rows.append(f"| {flow} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], help="run clients named so")
    args = parser.parse_args(argv)
    chosen = [c for c in CLIENTS if not args.only or any(o in c.name for o in args.only)]
    if not chosen:
        parser.error(f"no client matches {args.only}; known: {[c.name for c in CLIENTS]}")
    outcomes: list[Outcome] = []
    for client in chosen:
        started = time.monotonic()
        outcome = run_client(client)
        outcomes.append(outcome)
        status = "ok" if outcome.ok else "FAILED"
        print(f"{client.name}: {status} in {time.monotonic() - started:.1f} s", flush=True)
        for flow in FLOWS:
            ok, detail = outcome.results.get(flow, (False, "no result"))
            print(f"  {'PASS' if ok else 'FAIL'} {flow}: {detail}")
        if not outcome.ok:
            print(outcome.log[-4000:], file=sys.stderr)
    print()
    print(table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
