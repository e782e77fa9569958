"""The wheel and sdist carry the licence and the type marker, and twine accepts them."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist, and a wheel built from it, in a fresh directory."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_the_wheel_holds_the_licence_and_the_type_marker(dist: Path) -> None:
    (wheel,) = dist.glob("ibconn-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "ibconn/py.typed" in names
    assert "License-Expression: MIT" in text
    assert "Classifier: Typing :: Typed" in text
    assert "Classifier: Programming Language :: Python :: 3.13" in text
    assert "Project-URL: Homepage, https://github.com/ibconn/ibconn" in text


def test_the_sdist_holds_the_licence_and_the_changelog_but_no_virtualenv(dist: Path) -> None:
    (sdist,) = dist.glob("ibconn-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    assert "LICENSE" in names and "CHANGELOG.md" in names and "ibconn/py.typed" in names
    assert not [n for n in names if n.startswith((".venv", ".ci-venv", ".nox", "docs/_build"))]


def test_twine_check_passes(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir() if p.suffix in {".whl", ".gz"})
    assert len(files) == 2, files
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_readme_links_are_absolute_so_they_work_on_a_package_index() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)]+)\)", readme)
    assert targets
    relative = [t for t in targets if not t.startswith("https://")]
    assert not relative, relative


def test_the_readme_sets_up_a_venv_and_keeps_the_command_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = "python -m pip install -e '.[dev]' && python -m pytest"
    assert test_command in ci and test_command in readme
    assert "python -m pip install . && python -m ibconn demo" in readme
    setup = readme[readme.index("```bash") : readme.index("python -m ibconn demo")]
    assert "python3 -m venv .venv" in setup and ". .venv/bin/activate" in setup
