"""The 0.1 module paths of ibconn.sim keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

import pytest

import ibconn.sim
from ibconn.core.moved import OLD_MODULES, RENAMED

SIM_PATHS = sorted(old for old in OLD_MODULES if old.startswith("sim."))
NEW_PACKAGES = ("sim.broker", "sim.protocol")  # old module paths that are packages now


def _new_home(name: str) -> Any:
    """The object called ``name`` in the one new ibconn.sim module exporting it."""
    found = []
    for info in pkgutil.walk_packages(ibconn.sim.__path__, "ibconn.sim."):
        module = importlib.import_module(info.name)
        if name in getattr(module, "__all__", ()):
            found.append(getattr(module, name))
    assert found, f"{name} is exported by no ibconn.sim module"
    return found[0]


def _fresh(old: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import ``ibconn.<old>`` as a first-time user would (no cached names)."""
    full = f"ibconn.{old}"
    if old in NEW_PACKAGES:
        module = importlib.import_module(full)
        for name in OLD_MODULES[old][1].split():
            monkeypatch.delitem(module.__dict__, name, raising=False)
        return module
    monkeypatch.delitem(sys.modules, full, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"ibconn\.{old} is an import path"):
        return importlib.import_module(full)


def test_every_old_sim_path_is_listed() -> None:
    expected = {
        "sim.accounts", "sim.broker", "sim.broker_handlers", "sim.broker_service", "sim.cli",
        "sim.clock", "sim.control", "sim.faults", "sim.gateway", "sim.history",
        "sim.instruments", "sim.market_data", "sim.matching", "sim.message_log",
        "sim.options", "sim.order_messages", "sim.prices", "sim.protocol", "sim.state_file",
        "sim.versions",
    }  # fmt: skip
    assert set(SIM_PATHS) == expected


@pytest.mark.parametrize("old", SIM_PATHS)
def test_old_sim_path_yields_the_same_objects_with_a_warning(
    old: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _fresh(old, monkeypatch)
    for name in OLD_MODULES[old][1].split():
        with pytest.warns(DeprecationWarning, match=rf"ibconn\.{old}\.{name} is an import path"):
            value = getattr(module, name)
        expected = _new_home(RENAMED.get(old, {}).get(name, name))
        if isinstance(value, (type, type(_new_home))):
            assert value is expected, f"ibconn.{old}.{name}"
        else:
            assert value == expected, f"ibconn.{old}.{name}"


def test_old_sim_names_are_the_simulators_not_the_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = _fresh("sim.gateway", monkeypatch)
    with pytest.warns(DeprecationWarning):
        assert gateway.SimulatedGateway is ibconn.sim.SimulatedGateway
    broker = _fresh("sim.broker", monkeypatch)
    with pytest.warns(DeprecationWarning):
        assert broker.Broker is ibconn.sim.Broker


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("sim.prices", "Quote", "MarketQuote"),
        ("sim.matching", "Quote", "BookQuote"),
        ("sim.market_data", "MarketDataService", "MarketDataFeeds"),
        ("sim.history", "Bar", "Bar"),
    ],
)
def test_a_name_the_client_also_has_resolves_to_the_simulators(
    old: str, name: str, new: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _fresh(old, monkeypatch)
    with pytest.warns(DeprecationWarning, match=rf"ibconn\.{old}\.{name} is an import path"):
        value = getattr(module, name)
    assert value is _new_home(new)
    assert value is not getattr(ibconn, name, None)  # never the client's Quote, Bar, ...


def test_sim_quote_is_renamed_market_quote_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="ibconn.sim.MarketQuote"):
        old = ibconn.sim.Quote
    assert old is ibconn.sim.MarketQuote
    assert "MarketQuote" in ibconn.sim.__all__
    assert "Quote" not in ibconn.sim.__all__


def test_unknown_sim_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="Nope"):
        _ = ibconn.sim.Nope  # type: ignore[attr-defined]
