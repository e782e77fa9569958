"""Write ``pydantic.inv``: the intersphinx inventory of the pydantic names ibconn's API
reference links to, with their pages on https://docs.pydantic.dev/latest/.

The build runs without network (CI has none), so it cannot fetch pydantic's own
``objects.inv``. Each name is listed under its public path and under the module path
autodoc writes in "Bases:" lines. Run ``python docs/_inventories/pydantic_inventory.py``
after adding a name.
"""

from __future__ import annotations

import zlib
from pathlib import Path

# (name, role, page and anchor under https://docs.pydantic.dev/latest/)
ENTRIES: list[tuple[str, str, str]] = [
    ("pydantic.BaseModel", "class", "api/base_model/#pydantic.BaseModel"),
    ("pydantic.main.BaseModel", "class", "api/base_model/#pydantic.BaseModel"),
    ("pydantic.Field", "function", "api/fields/#pydantic.fields.Field"),
    ("pydantic.fields.Field", "function", "api/fields/#pydantic.fields.Field"),
    ("pydantic.fields.FieldInfo", "class", "api/fields/#pydantic.fields.FieldInfo"),
    ("pydantic.ConfigDict", "class", "api/config/#pydantic.config.ConfigDict"),
    ("pydantic.config.ConfigDict", "class", "api/config/#pydantic.config.ConfigDict"),
    ("pydantic.ValidationError", "exception", "api/pydantic_core/#pydantic_core.ValidationError"),
    (
        "pydantic_core.ValidationError",
        "exception",
        "api/pydantic_core/#pydantic_core.ValidationError",
    ),
    (
        "pydantic.field_validator",
        "function",
        "api/functional_validators/#pydantic.functional_validators.field_validator",
    ),
    (
        "pydantic.model_validator",
        "function",
        "api/functional_validators/#pydantic.functional_validators.model_validator",
    ),
    (
        "pydantic_settings.BaseSettings",
        "class",
        "api/pydantic_settings/#pydantic_settings.BaseSettings",
    ),
    (
        "pydantic_settings.main.BaseSettings",
        "class",
        "api/pydantic_settings/#pydantic_settings.BaseSettings",
    ),
    (
        "pydantic_settings.SettingsConfigDict",
        "class",
        "api/pydantic_settings/#pydantic_settings.SettingsConfigDict",
    ),
]


def inventory() -> bytes:
    """The inventory in Sphinx's version 2 format."""
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: pydantic\n"
        "# Version: 2\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{name} py:{role} 1 {uri} -\n" for name, role, uri in ENTRIES)
    return header.encode() + zlib.compress(body.encode())


if __name__ == "__main__":
    Path(__file__).with_name("pydantic.inv").write_bytes(inventory())
