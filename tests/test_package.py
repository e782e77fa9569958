"""The public surface: what the package exports, and what it never does."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import ibconn

PACKAGE_DIR = Path(ibconn.__file__).parent
# Entry points that own their process may start an event loop; the library may not.
APPLICATION_MODULES = {"__main__.py", "demo.py", "cli.py"}


def test_every_exported_name_exists() -> None:
    for name in ibconn.__all__:
        assert hasattr(ibconn, name), name


def test_every_public_module_declares_all() -> None:
    for info in pkgutil.walk_packages(ibconn.__path__, "ibconn."):
        if info.name.split(".")[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"


def test_the_library_never_runs_or_nests_an_event_loop() -> None:
    forbidden = re.compile(r"asyncio\.run\(|run_until_complete|startLoop|nest_asyncio")
    offenders = [
        str(path.relative_to(PACKAGE_DIR))
        for path in PACKAGE_DIR.rglob("*.py")
        if path.name not in APPLICATION_MODULES and forbidden.search(path.read_text())
    ]
    assert offenders == []


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ibconn", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "server version 178, accounts DU0000001" in out
    assert "AAPL     conId 265598" in out
    assert "quotes:" in out
    assert "connected -> reconnecting" in out
    assert "reconnecting -> connected" in out
    assert "BUY 100 AAPL MKT -> filled 100" in out
    assert "cancelled -> cancelled, filled 40 of 100" in out
    assert "positions (0 mismatch(es) with the broker):" in out
    assert "DU0000001 AAPL 60 avg cost 190.02" in out
    assert "reconciled: DU0000001 AAPL: quantity 60 at ibconn, 75 at the broker" in out
    assert out.rstrip().endswith("state=closed>")


def test_the_library_uses_asyncio_timeout_not_wait_for() -> None:
    # On Python 3.11, asyncio.wait_for can swallow a cancellation that races with
    # the awaited result (fixed in 3.12); a swallowed cancel left disconnect() hanging.
    offenders = [
        str(path.relative_to(PACKAGE_DIR))
        for path in PACKAGE_DIR.rglob("*.py")
        if "asyncio.wait_for(" in path.read_text() and path.name not in APPLICATION_MODULES
    ]
    assert offenders == []
