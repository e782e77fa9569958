"""Foreign TWS API clients, each in its own virtualenv, pass every flow against ``ibconn sim``.

The virtualenvs are created once under ``.clients-venvs/`` (gitignored) and reused;
a failed install fails the test (nothing is skipped). ``nox -s clients`` runs the
same flows and prints the table of ``docs/simulator.md``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUNNER = Path(__file__).resolve().parents[2] / "clients" / "run.py"


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ibconn_clients_run", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


run = _load_runner()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", [client.name for client in run.CLIENTS])
def test_client_passes_every_flow_against_the_sim_process(name: str) -> None:
    client = next(c for c in run.CLIENTS if c.name == name)
    outcome = run.run_client(client)
    failed = {
        flow: outcome.results.get(flow, (False, "no result"))[1]
        for flow in run.FLOWS
        if not outcome.results.get(flow, (False, ""))[0]
    }
    assert not failed, f"{name} failed {failed}\n{outcome.log[-3000:]}"
