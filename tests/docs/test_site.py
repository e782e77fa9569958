"""The documentation site builds with no warnings and documents every public name."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import ibconn
import ibconn.sim

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@dataclasses.dataclass(frozen=True)
class Built:
    """The result of one ``sphinx-build -W`` run."""

    returncode: int
    output: str
    inventory: dict[str, tuple[str, str]]  # name -> (domain:role, page)
    html: Path  # the output directory


def read_inventory(path: Path) -> dict[str, tuple[str, str]]:
    """The entries of a Sphinx ``objects.inv`` (version 2): name -> (domain:role, uri)."""
    raw = path.read_bytes()
    header_lines = raw.split(b"\n", 4)
    assert header_lines[0] == b"# Sphinx inventory version 2", header_lines[0]
    body = zlib.decompress(header_lines[4]).decode()
    entries: dict[str, tuple[str, str]] = {}
    for line in body.splitlines():
        name, rest = line.split(" ", 1)
        role, _priority, uri, _label = rest.split(" ", 3)
        entries.setdefault(name, (role, uri))
    return entries


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The site built once for this module, exactly as ``nox -s docs`` builds it."""
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-j", "auto", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / ".doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=280, check=False, cwd=ROOT,
    )  # fmt: skip
    inventory_file = out / "objects.inv"
    inventory = read_inventory(inventory_file) if inventory_file.exists() else {}
    return Built(result.returncode, result.stdout + result.stderr, inventory, out)


def test_the_site_builds_with_no_warnings(site: Built) -> None:
    assert "WARNING" not in site.output and "ERROR" not in site.output, site.output
    assert site.returncode == 0, site.output


@pytest.mark.parametrize(
    ("module", "page"), [(ibconn, "api/ibconn.html"), (ibconn.sim, "api/sim.html")]
)
def test_every_public_name_has_a_reference_entry_under_its_public_path(
    site: Built, module: object, page: str
) -> None:
    prefix = module.__name__  # type: ignore[attr-defined]
    names = list(module.__all__)  # type: ignore[attr-defined]
    assert names
    missing = [n for n in names if f"{prefix}.{n}" not in site.inventory]
    assert not missing, f"not in the API reference: {missing}"
    for name in names:
        role, uri = site.inventory[f"{prefix}.{name}"]
        assert role.startswith("py:"), (name, role)
        assert uri.startswith(f"{page}#"), (name, uri)


@pytest.mark.parametrize(
    "cls",
    [ibconn.Fill, ibconn.OrderSnapshot, ibconn.OrderUpdate, ibconn.ExitPlan,
     ibconn.ConnectionEvent, ibconn.Position, ibconn.Bar, ibconn.Quote],
    ids=lambda c: c.__name__,
)  # fmt: skip
def test_every_field_of_the_result_types_is_documented(site: Built, cls: type) -> None:
    if dataclasses.is_dataclass(cls):
        fields = [f.name for f in dataclasses.fields(cls)]
    else:  # a NamedTuple
        fields = list(cls._fields)  # type: ignore[attr-defined]
    assert fields
    missing = [f for f in fields if f"ibconn.{cls.__name__}.{f}" not in site.inventory]
    assert not missing, f"fields of {cls.__name__} missing from the reference: {missing}"


@pytest.mark.parametrize(
    ("path", "cls"),
    [("ibconn.IBConnector", ibconn.IBConnector), ("ibconn.OrderHandle", ibconn.OrderHandle),
     ("ibconn.sim.SimulatedGateway", ibconn.sim.SimulatedGateway)],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_every_public_member_is_documented(site: Built, path: str, cls: type) -> None:
    """Also those IBConnector inherits from its per-capability mixins (orders(), quotes()...)."""
    public = [n for n in dir(cls) if not n.startswith("_")]
    missing = [n for n in public if f"{path}.{n}" not in site.inventory]
    assert not missing, f"{path} members missing from the reference: {missing}"


def test_the_guide_recipes_and_changelog_are_in_the_site(site: Built) -> None:
    pages = {name for name, (role, _) in site.inventory.items() if role == "std:doc"}
    expected = {
        "index", "getting-started", "logging", "changelog", "api/ibconn", "api/sim",
        "recipes/strategy-loop", "recipes/testing", "recipes/jupyter",
        "recipes/several-connectors",
    }  # fmt: skip
    guide = {p.stem for p in DOCS.glob("*.md")}  # every existing guide page is in a toctree
    assert expected | guide <= pages, sorted((expected | guide) - pages)


@pytest.mark.parametrize(
    ("name", "url"),
    [
        (
            "pydantic.BaseModel",
            "https://docs.pydantic.dev/latest/api/base_model/#pydantic.BaseModel",
        ),
        ("str", "https://docs.python.org/3/library/stdtypes.html#str"),
    ],
)
def test_references_to_pydantic_and_python_resolve_offline_to_links(
    site: Built, name: str, url: str
) -> None:
    """The offline inventories of docs/_inventories turn a reference into a link."""
    page = (site.html / "api" / "ibconn.html").read_text()
    assert re.search(rf'<a class="reference external" href="{re.escape(url)}"', page), name
