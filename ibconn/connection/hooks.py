"""The services the supervisor keeps in step with the session, and running their hooks.

Hooks run one service at a time, in ``Service.order`` (then registration
order), each under ``resync_timeout``: a hook that raises or overruns is
logged, alerted and counted (:attr:`ServiceHooks.errors`), and the next
service still runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from ib_async import IB

from ibconn.connection.session import Service, Session
from ibconn.core.alerts import AlertBus
from ibconn.core.code_alerts import RequestContext
from ibconn.core.codes import Severity
from ibconn.core.logs import get_logger

__all__ = ["ServiceHooks"]

_err_log = get_logger("errors")


class ServiceHooks:
    """The registered services and their session hooks."""

    def __init__(self, alerts: AlertBus, resync_timeout: float) -> None:
        self._alerts = alerts
        self._timeout = resync_timeout
        self._services: list[Service] = []
        self.errors = 0
        """Hooks that raised or did not finish within ``resync_timeout``."""

    def add(self, service: Service) -> None:
        """Register a service; its hooks run in ``order`` on every session change."""
        self._services.append(service)
        self._services.sort(key=lambda s: s.order)

    async def run_ready(self, ib: IB, session: Session) -> None:
        """Every service's ``on_session_ready``: the resync before ``CONNECTED``."""
        for service in list(self._services):
            await self._guarded(
                service.on_session_ready(ib, session), f"{service.name}.on_session_ready"
            )

    async def run_lost(self, reason: str) -> None:
        """Every service's ``on_session_lost``."""
        for service in list(self._services):
            await self._guarded(service.on_session_lost(reason), f"{service.name}.on_session_lost")

    async def run_farm_restored(self, ib: IB, farm: str) -> None:
        """Every service's ``on_farm_restored``."""
        for service in list(self._services):
            await self._guarded(
                service.on_farm_restored(ib, farm), f"{service.name}.on_farm_restored"
            )

    def describe_request(self, req_id: int) -> RequestContext | None:
        """The first registered service's description of ``req_id`` (``None``: nobody's)."""
        for service in self._services:
            context = service.describe_request(req_id)
            if context is not None:
                return context
        return None

    async def _guarded(self, hook: Awaitable[None], what: str) -> None:
        """Run one hook under ``resync_timeout``; log and count any failure."""
        timeout = self._timeout
        try:
            async with asyncio.timeout(timeout):
                await hook
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self.errors += 1
            self._alerts.publish(
                Severity.ERROR, "connection", f"{what} did not finish within {timeout} s"
            )
        except Exception as exc:
            self.errors += 1
            _err_log.opt(exception=exc).error("{} raised {!r}", what, exc)
            self._alerts.publish(Severity.ERROR, "errors", f"{what} raised {exc!r}")
