"""The command line: ``python -m ibconn`` and the demo."""

__all__: list[str] = []
