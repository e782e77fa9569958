"""The layout's rules (docs/architecture.md): layers, no circles, small modules, one compat door."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

import ibconn

PACKAGE_DIR = Path(ibconn.__file__).parent
REPO = PACKAGE_DIR.parent
MAX_MODULE_LINES = 600
# The only modules that may touch ib_async's private internals (behind its version guard).
IB_ASYNC_COMPAT = {"wire/ib_compat.py", "wire/receive.py"}
IB_ASYNC_PRIVATE = re.compile(
    r"\.(?:wrapper|client)\._[a-zA-Z]|\._(?:futures|results|endReq|msgQ)\b"
)


def _lint_imports(pythonpath: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter's contracts from ``config`` on the ``ibconn`` found at ``pythonpath``."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; "
            "sys.exit(lint_imports_command())",
            "--config",
            str(config),
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=pythonpath,
    )


def test_the_dependency_rule_holds() -> None:
    result = _lint_imports(REPO, REPO / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_against_the_rule_fails_the_check(tmp_path: Path) -> None:
    # The check can fail: a copy of the package where core imports the risk package.
    shutil.copytree(PACKAGE_DIR, tmp_path / "ibconn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    streams = tmp_path / "ibconn" / "core" / "streams.py"
    streams.write_text(streams.read_text() + "\nimport ibconn.risk  # against the rule\n")
    result = _lint_imports(tmp_path, tmp_path / "pyproject.toml")
    assert result.returncode == 1, result.stdout
    assert "ibconn.core is not allowed to import ibconn.risk" in result.stdout
    assert "ibconn.core.streams -> ibconn.risk" in result.stdout


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), i.e. import circles."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circles() -> None:
    # Every import counts: module level, under TYPE_CHECKING and inside functions.
    graph = grimp.build_graph("ibconn", include_external_packages=False)
    assert _circles(graph) == []


def test_the_circle_check_can_fail() -> None:
    graph = grimp.build_graph("ibconn", include_external_packages=False)
    graph.add_import(importer="ibconn.core.subscription", imported="ibconn.errors")
    graph.add_import(importer="ibconn.errors", imported="ibconn.core.subscription")
    assert ["ibconn.core.subscription", "ibconn.errors"] in _circles(graph)


def test_no_module_over_600_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE_DIR)): len(path.read_text().splitlines())
        for path in PACKAGE_DIR.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_ib_async_internals_are_touched_only_behind_the_version_guard() -> None:
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): IB_ASYNC_PRIVATE.findall(path.read_text())
        for path in PACKAGE_DIR.rglob("*.py")
        if str(path.relative_to(PACKAGE_DIR)) not in IB_ASYNC_COMPAT
        and not str(path.relative_to(PACKAGE_DIR)).startswith("sim/")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_architecture_page_names_every_module() -> None:
    # docs/architecture.md has a table per package: a new module must say its one job there.
    page = (REPO / "docs" / "architecture.md").read_text()
    tables = {
        line.split("`")[1].rstrip("/"): [] for line in page.splitlines() if line.startswith("### `")
    }
    current = None
    for line in page.splitlines():
        if line.startswith("### `"):
            current = line.split("`")[1].rstrip("/")
        elif current and line.startswith("| `"):
            tables[current].append(line.split("`")[1])
    missing = []
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = path.relative_to(PACKAGE_DIR.parent)
        if path.name == "__init__.py" and path.parent != PACKAGE_DIR:
            continue
        if path.name not in tables.get(str(rel.parent), []):
            missing.append(str(rel))
    assert missing == []
