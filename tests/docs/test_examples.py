"""The pytest examples in the docs run under pytest-asyncio's default (strict) mode."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pytest_examples(page: Path) -> list[str]:
    """The Python code blocks of ``page`` that use the ``ibconn_gateway`` fixture."""
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
    return [b for b in blocks if "ibconn_gateway" in b and "def test_" in b]


@pytest.mark.parametrize("page", ["simulator.md", "recipes/testing.md"])
def test_the_pytest_examples_pass_in_strict_mode(page: str, tmp_path: Path) -> None:
    examples = pytest_examples(ROOT / "docs" / page)
    assert examples, f"no pytest example found in docs/{page}"
    expected = 0
    for i, code in enumerate(examples):
        (tmp_path / f"test_example_{i}.py").write_text(code)
        expected += len(re.findall(r"^async def test_", code, re.M))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, timeout=50, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{expected} passed" in result.stdout, result.stdout[-3000:]
