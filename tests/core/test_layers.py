"""The bottom layers import nothing above them: top-level, TYPE_CHECKING and in-function imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ibconn

PACKAGE_DIR = Path(ibconn.__file__).parent

# what each low layer may import from ibconn (docs/architecture.md, the dependency rule)
ALLOWED: dict[str, frozenset[str]] = {
    "errors.py": frozenset(),
    "core": frozenset({"ibconn.core", "ibconn.errors"}),
    "config": frozenset({"ibconn.config", "ibconn.core", "ibconn.errors"}),
    "contracts": frozenset(
        {
            "ibconn.contracts",
            "ibconn.connection",
            "ibconn.pacing",
            "ibconn.wire",
            "ibconn.config",
            "ibconn.core",
            "ibconn.errors",
        }
    ),
}


def ibconn_imports(path: Path) -> set[str]:
    """Every ``ibconn`` module the file at ``path`` imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "ibconn" or name.startswith("ibconn.")}


def layer_files(layer: str) -> list[Path]:
    path = PACKAGE_DIR / layer
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_low_layer_imports_nothing_above_it(layer: str) -> None:
    allowed = ALLOWED[layer]
    files = layer_files(layer)
    assert files
    breaches = {
        f"{path.relative_to(PACKAGE_DIR)} imports {name}"
        for path in files
        for name in ibconn_imports(path)
        if not any(name == ok or name.startswith(ok + ".") for ok in allowed)
    }
    assert sorted(breaches) == []


def test_the_layer_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ibconn.orders.models import OrderSpec\n"
        "def f():\n    import ibconn.config.settings\n",
        encoding="utf-8",
    )
    assert ibconn_imports(source) == {"ibconn.orders.models", "ibconn.config.settings"}
