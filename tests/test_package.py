"""The public surface: what the package exports, and what it never does."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ibconn
from ibconn.core.moved import OLD_MODULES, RENAMED

PACKAGE_DIR = Path(ibconn.__file__).parent
# Entry points that own their process may start an event loop; the library may not.
APPLICATION_MODULES = {"__main__.py", "demo.py", "cli.py"}
APPLICATION_PACKAGES = {"cli"}  # ibconn.cli: the command line, each command its own process


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
        if path.name not in APPLICATION_MODULES
        and path.relative_to(PACKAGE_DIR).parts[0] not in APPLICATION_PACKAGES
        and forbidden.search(path.read_text())
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


def test_every_old_import_path_still_works_with_a_deprecation_warning() -> None:
    # ibconn 0.1's 40 flat modules moved into packages; their names stay reachable for one release.
    for old, (_package, listed) in OLD_MODULES.items():
        if old.startswith("sim."):
            continue  # the gateway's own (tests/sim/test_old_paths.py)
        names = tuple(listed.split())
        _forget_old_path(old, names)
        with pytest.warns(DeprecationWarning, match=rf"ibconn\.{old}"):
            module = importlib.import_module(f"ibconn.{old}")
            found = {name: getattr(module, name) for name in names}
        for name, value in found.items():
            if name in RENAMED.get(old, {}):  # never the public namesake
                assert value.__name__ == RENAMED[old][name], f"ibconn.{old}.{name}"
            elif name in ibconn.__all__:
                assert value is getattr(ibconn, name), f"ibconn.{old}.{name}"


def _forget_old_path(old: str, names: tuple[str, ...]) -> None:
    """Undo what an earlier import cached, so that the warning shows again."""
    module = sys.modules.get(f"ibconn.{old}")
    if module is None:
        return
    if not hasattr(module, "__path__"):  # a shim module: import it afresh
        del sys.modules[f"ibconn.{old}"]
        return
    for name in names:  # a package now: the shim caches each name it resolved
        module.__dict__.pop(name, None)


def test_an_old_path_names_the_public_import_in_its_warning() -> None:
    module = importlib.import_module("ibconn.orders")  # a package now; OrderHandle was its name
    module.__dict__.pop("OrderHandle", None)  # the shim caches a resolved name: ask afresh
    with pytest.warns(DeprecationWarning, match="use 'from ibconn import OrderHandle'"):
        handle = module.OrderHandle
    assert handle is ibconn.OrderHandle


def test_an_unknown_name_under_an_old_path_is_an_attribute_error() -> None:
    module = importlib.import_module("ibconn.orders")
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = module.NoSuchThing
