"""Sphinx configuration of ibconn's documentation site (``nox -s docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

import ibconn

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "ibconn"
author = "the ibconn authors"
copyright = "2026, the ibconn authors"
release = ibconn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "public_api",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# MyST: `#anchor` links to headings as on GitHub; ```{directive} fences.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# autodoc: names under their public path (the public-api directive), hints in the text.
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
python_use_unqualified_type_names = True

# Inventories of Python's and pydantic's documentation. Both ship in docs/_inventories so
# that the build needs no network (CI has none): python.inv is the objects.inv of the
# Python 3.11 documentation; pydantic.inv is made by docs/_inventories/pydantic_inventory.py.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", str(DOCS / "_inventories" / "python.inv")),
    "pydantic": ("https://docs.pydantic.dev/latest", str(DOCS / "_inventories" / "pydantic.inv")),
}

html_theme = "furo"
html_title = f"ibconn {release}"
html_static_path: list[str] = []
html_theme_options = {
    "source_repository": "https://github.com/ibconn/ibconn",
    "source_branch": "main",
    "source_directory": "docs/",
}

# pydantic's own members of every model are pydantic's to document.
autodoc_default_options = {
    "exclude-members": "model_config, model_fields, model_computed_fields, model_post_init",
}
