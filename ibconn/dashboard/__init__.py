"""ibconn dashboard: a live terminal view of one connector (Textual, the ``tui`` extra).

It runs in the connector's event loop and reads only the connector's public streams
and ``status()``. :func:`create_app` builds the app, :func:`run_dashboard` runs it
until the user quits; both raise :class:`~ibconn.errors.MissingDependencyError`
naming the extra when Textual is not installed. See ``docs/dashboard.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ibconn.dashboard.ports import DashboardSource
from ibconn.errors import MissingDependencyError

if TYPE_CHECKING:
    from ibconn.dashboard.app import DashboardApp

__all__ = ["create_app", "require_textual", "run_dashboard"]


def require_textual() -> None:
    """Raise :class:`~ibconn.errors.MissingDependencyError` (extra ``tui``) without Textual."""
    try:
        importlib.import_module("textual")
    except ImportError:
        raise MissingDependencyError(
            "ibconn dashboard needs Textual: pip install 'ibconn[tui]' (or pip install textual)",
            package="textual",
            extra="tui",
        ) from None


def create_app(source: DashboardSource, **options: Any) -> DashboardApp:
    """A :class:`~ibconn.dashboard.app.DashboardApp` on ``source`` (a connected connector).

    ``options``: ``symbols`` (watched with ``quotes()``), ``refresh_hz`` (default 4,
    at most 10), ``stale_after`` (seconds, default 5), ``latency_interval`` (seconds
    between two ``server_time()`` probes, default 5), ``action_timeout`` (default 10).
    """
    require_textual()
    from ibconn.dashboard.app import DashboardApp  # noqa: PLC0415 (the optional dependency)

    return DashboardApp(source, **options)


async def run_dashboard(
    source: DashboardSource, *, symbols: Sequence[str] = (), **options: Any
) -> None:
    """Show the dashboard on this terminal until ``q``; the connector keeps running."""
    await create_app(source, symbols=symbols, **options).run_async()
