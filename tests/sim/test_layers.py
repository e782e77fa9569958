"""ibconn.sim's import rule: layers server -> broker -> market -> protocol, and nothing of
the client but ibconn.errors and ibconn.core (every import counts: top level, under
TYPE_CHECKING and inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import ibconn.sim

SIM_DIR = Path(ibconn.sim.__file__).parent
LAYER = {"protocol": 0, "market": 1, "config": 1, "broker": 2, "server": 3}
"""``ibconn.sim.config`` (the settings, naming the catalogue) sits with ``market``."""
TOP = 4  # ibconn/sim/__init__.py and pytest_plugin.py: the facade
CLIENT_ALLOWED = ("ibconn.errors", "ibconn.core")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name == "ibconn" or name.startswith("ibconn.")]


def _layer(parts: tuple[str, ...]) -> int:
    return LAYER.get(parts[0], TOP) if parts else TOP


def _violations(root: Path = SIM_DIR) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("").parts
        mine = _layer(rel)
        for name in _imports(path):
            where = f"ibconn/sim/{'/'.join(rel)}.py imports {name}"
            if not name.startswith("ibconn.sim"):
                if name != "ibconn.sim" and not name.startswith(CLIENT_ALLOWED):
                    found.append(f"{where}: sim imports only ibconn.errors and ibconn.core")
                continue
            if name == "ibconn.sim" and mine < TOP:
                found.append(f"{where}: only the facade imports the ibconn.sim package")
            target = tuple(name.split(".")[2:3])
            if target and target[0] in LAYER and _layer(target) > mine:
                found.append(f"{where}: a lower layer imports a higher one")
            if rel[0] == "protocol" and target and target[0] != "protocol":
                found.append(f"{where}: protocol imports nothing else of ibconn.sim")
    return found


def test_sim_imports_follow_its_layers_and_nothing_of_the_client() -> None:
    assert _violations() == []


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    # A deliberate violation, checked with the same code as the real tree.
    bad = tmp_path / "protocol"
    bad.mkdir()
    (bad / "framing.py").write_text("from ibconn.sim.server.gateway import SimulatedGateway\n")
    (tmp_path / "market").mkdir()
    (tmp_path / "market" / "feeds.py").write_text("import ibconn.orders\n")
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "service.py").write_text("from ibconn.sim import SimConfig\n")
    found = _violations(tmp_path)
    assert any("a lower layer imports a higher one" in v for v in found)
    assert any("protocol imports nothing else" in v for v in found)
    assert any("only ibconn.errors and ibconn.core" in v for v in found)
    assert any("only the facade imports" in v for v in found)
