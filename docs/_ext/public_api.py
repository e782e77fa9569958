"""Sphinx extension: the API reference of a package, generated from its ``__all__``.

``.. public-api:: ibconn`` (in a MyST page, inside an ``{eval-rst}`` fence) expands
to one autodoc entry per name in ``ibconn.__all__``, documented under its public
path (``ibconn.IBConnector``, not the module that happens to define it), so the
reference follows the package as modules move. Classes come with their members;
enums with their values; everything else (functions, constants, type aliases)
as itself.
"""

from __future__ import annotations

import enum
import importlib
import inspect
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def public_names(module_name: str) -> list[str]:
    """The names of ``module_name.__all__``, in the order given there."""
    module = importlib.import_module(module_name)
    return list(module.__all__)


def _documented_elsewhere(cls: type, public: set[int]) -> list[str]:
    """Names of the bases of ``cls`` whose members are documented elsewhere: those from
    outside ibconn (``object``, pydantic's ``BaseModel``...) and ibconn's public classes.
    A private ibconn base (``IBConnector``'s per-capability mixins) is neither, so its
    members are documented on the public class that inherits them."""
    return [
        base.__name__
        for base in cls.__mro__[1:]
        if not base.__module__.startswith("ibconn.") or id(base) in public
    ]


def _entry(module_name: str, name: str, value: Any, public: set[int]) -> list[str]:
    path = f"{module_name}.{name}"
    if inspect.isclass(value) and issubclass(value, BaseException):
        return [f".. autoexception:: {path}", "   :members:", "   :show-inheritance:"]
    if inspect.isclass(value) and issubclass(value, enum.Enum):
        return [f".. autoclass:: {path}", "   :members:", "   :undoc-members:"]
    if inspect.isclass(value):
        lines = [f".. autoclass:: {path}", "   :members:", "   :undoc-members:"]
        outside = _documented_elsewhere(value, public)
        if len(outside) < len(value.__mro__) - 1:  # a private base's members belong here
            lines.append(f"   :inherited-members: {', '.join(outside)}")
        return [*lines, "   :show-inheritance:"]
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return [f".. autofunction:: {path}"]
    return [f".. autodata:: {path}", "   :no-value:" if not _short(value) else ""]


def _short(value: Any) -> bool:
    """Whether a constant's value is short enough to show."""
    return isinstance(value, (int, float, str)) and len(repr(value)) < 60


def _public_classes() -> set[int]:
    """Identities of the classes public in ``ibconn`` or ``ibconn.sim``."""
    found: set[int] = set()
    for module_name in ("ibconn", "ibconn.sim"):
        module = importlib.import_module(module_name)
        found |= {
            id(v) for n in public_names(module_name) if inspect.isclass(v := getattr(module, n))
        }
    return found


class PublicApi(SphinxDirective):
    """``public-api MODULE``: autodoc entries for every name in ``MODULE.__all__``."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        lines: list[str] = [f".. currentmodule:: {module_name}", ""]
        public = _public_classes()
        for name in public_names(module_name):
            lines += [*_entry(module_name, name, getattr(module, name), public), ""]
        content = StringList(lines, source=f"<public-api {module_name}>")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, content, container)
        return list(container.children)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the ``public-api`` directive."""
    app.add_directive("public-api", PublicApi)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
