"""Connector settings: loading from YAML and the environment, and their checks."""

from ibconn.core.moved import old_names_getattr

__all__: list[str] = []

__getattr__ = old_names_getattr("config")  # names of the 0.1 module ibconn.config, deprecated
