"""TWS's connectivity codes while a session is up: degraded state, data farms, port moves.

TWS keeps the API socket open when it loses IB's servers (1100, 2110): the
session turns ``DEGRADED`` (new orders are refused) and ends if IB stays away
for ``degraded_timeout``. 1101 (back, data lost) resyncs every service as a
new session generation before ``CONNECTED``; 1102 (back, data kept) simply
returns to ``CONNECTED``. A broken data farm that comes back runs the
services' ``on_farm_restored``; a 1300 ends the session towards the new port.
What each code means is decided by :func:`ibconn.connection.policy.decide_code`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ib_async import IB

from ibconn.config.settings import ConnectorSettings
from ibconn.connection.attempts import Endpoint
from ibconn.connection.hooks import ServiceHooks
from ibconn.connection.policy import LIVE_STATES, Loss, SessionAction, decide_code
from ibconn.connection.session import ConnectionState, Session
from ibconn.connection.state import LinkState
from ibconn.core.alerts import AlertBus
from ibconn.core.codes import CodeCategory, Severity
from ibconn.core.logs import get_logger
from ibconn.core.tasks import ServiceTasks

__all__ = ["ConnectivityWatch", "FarmStatus"]

_err_log = get_logger("errors")


@dataclass(frozen=True, slots=True)
class FarmStatus:
    """The last word TWS said about one data farm (``connector.status().farms``).

    ``farm`` is its kind and name (``market_data:usfarm``, ``historical:ushmds``);
    ``state`` is ``ok``, ``broken`` or ``inactive`` (idle, connects on demand).
    """

    farm: str
    state: str
    code: int
    message: str
    since: datetime


_FARM_STATES: dict[CodeCategory, str] = {
    CodeCategory.FARM_OK: "ok",
    CodeCategory.FARM_BROKEN: "broken",
    CodeCategory.FARM_INACTIVE: "inactive",
}


class ConnectivityWatch:
    """Turns TWS's codes into state changes, alerts and service hooks (one per supervisor)."""

    def __init__(
        self,
        settings: ConnectorSettings,
        alerts: AlertBus,
        *,
        link: LinkState,
        hooks: ServiceHooks,
        tasks: ServiceTasks,
        endpoint: Endpoint,
        ib: Callable[[], IB],
        mark_lost: Callable[[Loss], None],
    ) -> None:
        self._settings = settings
        self._alerts = alerts
        self._link = link
        self._hooks = hooks
        self._tasks = tasks
        self._endpoint = endpoint
        self._ib = ib
        self._mark_lost = mark_lost
        self._broken_farms: dict[str, int] = {}
        self._farms: dict[str, FarmStatus] = {}
        self._degraded_timer: asyncio.TimerHandle | None = None

    def on_code(self, req_id: int, code: int, message: str) -> None:
        """Handle one TWS code (ib_async's ``errorEvent``)."""
        decision = decide_code(req_id, code, message, self._link.state)
        if decision.log_level is not None:
            _err_log.log(
                decision.log_level, "TWS {} ({}): {}", code, decision.category.value, message
            )
        action = decision.action
        state = _FARM_STATES.get(decision.category)
        if state is not None and decision.farm is not None:
            self._farms[decision.farm] = FarmStatus(
                decision.farm, state, code, message, datetime.now(UTC)
            )
        if action is SessionAction.DEGRADE:
            self._enter_degraded(code, message)
        elif action is SessionAction.RESTORE_RESUBSCRIBE:
            self._cancel_degraded_timer()
            self._tasks.spawn(self._resubscribe(code, message), "ibconn-resubscribe-1101")
        elif action is SessionAction.RESTORE:
            self._cancel_degraded_timer()
            if self._link.state is ConnectionState.DEGRADED:
                self._link.set(ConnectionState.CONNECTED, message, code=code)
                self._alerts.publish(Severity.INFO, "connection", message, code=code)
        elif action is SessionAction.MOVE_PORT:
            self._endpoint.redirect_to(decision.new_port)
            self._mark_lost(Loss(f"TWS reset its API port (new port {decision.new_port})", code))
        elif action is SessionAction.FARM_BROKEN and decision.farm is not None:
            self._broken_farms[decision.farm] = code
            self._alerts.publish(
                Severity.WARNING, "market_data", f"data farm broken: {message}", code=code
            )
        elif action is SessionAction.FARM_OK and decision.farm is not None:
            if self._broken_farms.pop(decision.farm, None) is not None:
                self._alerts.publish(
                    Severity.INFO, "market_data", f"data farm restored: {message}", code=code
                )
                self._tasks.spawn(
                    self._hooks.run_farm_restored(self._ib(), decision.farm),
                    f"ibconn-farm-restored-{code}",
                )
        elif action is SessionAction.COMPETING_SESSION:
            self._alerts.publish(Severity.WARNING, "market_data", message, code=code)

    def farms(self) -> tuple[FarmStatus, ...]:
        """Every data farm TWS has reported on, with its latest state, sorted by name."""
        return tuple(self._farms[name] for name in sorted(self._farms))

    def session_started(self) -> None:
        """A new session is up: farms broken on the old one are forgotten."""
        self._broken_farms.clear()

    def session_ended(self) -> None:
        """The session is over: a pending degraded timeout no longer applies."""
        self._cancel_degraded_timer()

    def _enter_degraded(self, code: int, message: str) -> None:
        if self._link.state is not ConnectionState.CONNECTED:
            return
        self._link.set(ConnectionState.DEGRADED, message, code=code)
        self._alerts.publish(
            Severity.ERROR,
            "connection",
            f"TWS lost its connection to IB ({message}); new orders are refused until it is back",
            code=code,
        )
        timeout = self._settings.degraded_timeout
        self._cancel_degraded_timer()
        self._degraded_timer = asyncio.get_running_loop().call_later(
            timeout,
            self._mark_lost,
            Loss(f"TWS stayed without connectivity to IB for {timeout} s after {code}", code),
        )

    async def _resubscribe(self, code: int, message: str) -> None:
        """1101: the same socket, but TWS forgot every subscription: resync as a new session."""
        ib = self._ib()
        current = self._link.session
        if current is None:
            return
        session = Session(
            generation=self._link.next_generation(),
            reason=f"{code}: {message}",
            host=current.host,
            port=current.port,
            client_id=current.client_id,
            accounts=current.accounts,
            server_version=current.server_version,
            data_lost=True,
        )
        self._link.session = session
        await self._hooks.run_ready(ib, session)
        if self._link.state in LIVE_STATES:
            self._link.set(
                ConnectionState.CONNECTED, message, code=code, generation=session.generation
            )
            self._alerts.publish(Severity.INFO, "connection", message, code=code)

    def _cancel_degraded_timer(self) -> None:
        if self._degraded_timer is not None:
            self._degraded_timer.cancel()
            self._degraded_timer = None
