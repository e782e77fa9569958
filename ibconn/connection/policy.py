"""The supervisor's decisions, as pure functions: what a TWS code means for the
session, how long to wait before the next connect attempt, which port to try,
and what to tell the user when the first connect gives up.

Nothing here touches a socket, a clock or the event loop (the jitter takes its
random source as an argument), so every rule is unit-tested without a gateway
(``tests/connection/test_policy.py``).

Reconnects: after a session that was up is lost the first attempt comes at
once, then :func:`quick_retry_delay` spaces the retries ``reconnect_fast_interval``
apart for ``reconnect_fast_window`` seconds, and only then the backoff applies.

Backoff: :func:`backoff_delays` takes the exponential, capped sequence from
the ``backoff`` library (``backoff.expo``) and applies *equal jitter* (half of
each delay fixed, half random). ``backoff`` ships full jitter (``0 .. delay``:
a delay can come out near zero and hammer a TWS that is restarting) and
additive jitter (``delay + 0 .. 1 s``: exceeds the cap and is the same second
for every client); neither keeps both a floor and the cap, so the jitter is
ibconn's own.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import backoff

from ibconn.connection.session import ConnectionState
from ibconn.core.code_owners import reported_per_request
from ibconn.core.codes import CodeCategory, RecoveryAction, classify, farm_name, port_from_1300

__all__ = [
    "CLIENT_ID_IN_USE_MIN_DELAY",
    "LIVE_STATES",
    "AttemptVerdict",
    "CodeDecision",
    "Loss",
    "SessionAction",
    "alternate_port",
    "attempt_verdict",
    "backoff_delays",
    "decide_code",
    "describe_failure",
    "farm_key",
    "first_connect_failed",
    "gives_up",
    "quick_retry_delay",
    "retry_delay",
    "still_reconnecting_alert_due",
]

CLIENT_ID_IN_USE_MIN_DELAY = 0.5
"""After TWS says the client id is in use (326), the old session usually needs a
moment to be torn down: the next attempt waits at least this long."""

LIVE_STATES = frozenset({ConnectionState.CONNECTED, ConnectionState.DEGRADED})
"""States in which a session is up (TWS's connectivity codes only matter then)."""


_FARM_CATEGORIES = frozenset(
    {CodeCategory.FARM_BROKEN, CodeCategory.FARM_OK, CodeCategory.FARM_INACTIVE}
)


@dataclass(frozen=True, slots=True)
class Loss:
    """Why a session ended (``code``: the TWS code that ended it, if any)."""

    reason: str
    code: int | None = None


class SessionAction(enum.Enum):
    """What the supervisor does about a TWS code while a session is up."""

    NOTHING = "nothing"
    """Log it at most."""
    DEGRADE = "degrade"
    """TWS lost IB (1100, 2110): enter ``DEGRADED``, end the session if it lasts."""
    RESTORE_RESUBSCRIBE = "restore_resubscribe"
    """IB is back but the data is lost (1101): resync every service, then ``CONNECTED``."""
    RESTORE = "restore"
    """IB is back with the data kept (1102): leave ``DEGRADED``."""
    MOVE_PORT = "move_port"
    """TWS moved its API port (1300): end the session, reconnect on the new port."""
    FARM_BROKEN = "farm_broken"
    """A data farm broke: remember it, warn."""
    FARM_OK = "farm_ok"
    """A data farm is up: if it was broken, tell the services it is back."""
    COMPETING_SESSION = "competing_session"
    """Another live session of the user takes the market data: warn."""


@dataclass(frozen=True, slots=True)
class CodeDecision:
    """The supervisor's reading of one TWS code.

    ``log_level`` (a loguru level name) is ``None`` when the code is not the supervisor's to log (a
    request's own error, logged by the service that owns the request).
    ``farm`` names the farm (``market_data:usfarm``) for farm codes (broken, OK, inactive);
    ``new_port`` is the port a 1300 announced (``None`` if it named none).
    """

    action: SessionAction
    log_level: str | None
    category: CodeCategory
    farm: str | None = None
    new_port: int | None = None


def decide_code(req_id: int, code: int, message: str, state: ConnectionState) -> CodeDecision:
    """What a TWS code (``req_id``, ``code``, ``message``) means in ``state``."""
    info = classify(code, message)
    category = info.category
    # a request's own code is logged by the service that owns the request
    log_level = None if reported_per_request(info, req_id) else info.severity.log_level
    action = SessionAction.NOTHING
    farm: str | None = None
    new_port: int | None = None
    if category in _FARM_CATEGORIES:
        farm = farm_key(info.farm, message)
    if state in LIVE_STATES:
        if category is CodeCategory.CONNECTIVITY_LOST:
            action = SessionAction.DEGRADE
        elif category is CodeCategory.CONNECTIVITY_RESTORED_DATA_LOST:
            action = SessionAction.RESTORE_RESUBSCRIBE
        elif category is CodeCategory.CONNECTIVITY_RESTORED_DATA_KEPT:
            action = SessionAction.RESTORE
        elif category is CodeCategory.SOCKET_PORT_RESET:
            action = SessionAction.MOVE_PORT
            new_port = port_from_1300(message)
        elif category is CodeCategory.FARM_BROKEN:
            action = SessionAction.FARM_BROKEN
        elif category is CodeCategory.FARM_OK:
            action = SessionAction.FARM_OK
        elif category is CodeCategory.COMPETING_SESSION:
            action = SessionAction.COMPETING_SESSION
    return CodeDecision(action, log_level, category, farm, new_port)


@dataclass(frozen=True, slots=True)
class AttemptVerdict:
    """A code that ends a connect attempt: why, and the port TWS moved to (1300)."""

    reason: str
    code: int
    moved_to: int | None = None
    moved: bool = False


def attempt_verdict(code: int, message: str, client_id: int) -> AttemptVerdict | None:
    """Whether a TWS code received during a connect attempt makes it fail at once.

    326 (client id in use) and 1300 (API port moved) do; every other code
    leaves the attempt to ib_async's own outcome.
    """
    info = classify(code, message)
    if info.category is CodeCategory.CLIENT_ID_IN_USE:
        return AttemptVerdict(f"client id {client_id} is in use", code)
    if info.action is RecoveryAction.RECONNECT_NEW_PORT:
        new_port = port_from_1300(message)
        return AttemptVerdict(f"TWS moved its API port to {new_port}", code, new_port, True)
    return None


def farm_key(farm: str | None, message: str) -> str:
    """``market_data:usfarm``: the farm's kind and, where TWS names it, its name."""
    return f"{farm or 'farm'}:{farm_name(message) or ''}"


def backoff_delays(
    base: float, cap: float, uniform: Callable[[float, float], float] = random.uniform
) -> Iterator[float]:
    """Exponential delays from ``base`` doubling up to ``cap``, with equal jitter.

    Each delay ``d`` of ``backoff.expo`` becomes ``d / 2 + uniform(0, d / 2)``:
    never below half of ``d``, never above ``cap``.
    """
    expo: Iterator[float] = backoff.expo(base=2, factor=base, max_value=cap)
    next(expo)  # backoff.expo yields None first (its generator protocol)
    for delay in expo:
        yield delay / 2 + uniform(0, delay / 2)


def quick_retry_delay(first: bool, elapsed: float, interval: float, window: float) -> float | None:
    """The wait before the next attempt while a reconnect is in its quick phase.

    After a session that was up is lost, the first attempt comes at once and the
    retries every ``interval`` seconds until ``window`` seconds have passed since
    the loss (``elapsed``): a gateway that restarts within the window is back in
    use within about ``interval``. ``None`` (the backoff applies) for a first
    connect and once the window has passed.
    """
    if first or elapsed >= window:
        return None
    return interval


def retry_delay(delay: float, code: int | None) -> float:
    """The wait before the next attempt: ``delay``, but at least
    :data:`CLIENT_ID_IN_USE_MIN_DELAY` after a 326."""
    return max(delay, CLIENT_ID_IN_USE_MIN_DELAY) if code == 326 else delay


def gives_up(first: bool, attempt: int, max_attempts: int) -> bool:
    """Whether the connect stops after ``attempt`` failed: only the first connect
    gives up, after ``max_attempts`` (0: never)."""
    return first and max_attempts > 0 and attempt >= max_attempts


def still_reconnecting_alert_due(first: bool, attempt: int, every: int) -> bool:
    """Whether a reconnect that failed ``attempt`` times deserves a CRITICAL alert now."""
    return not first and every > 0 and attempt % every == 0


def alternate_port(current: int, configured: int, redirect: int | None, code: int | None) -> int:
    """The port of the next attempt after one on ``current`` failed with ``code``.

    While TWS's 1300 port (``redirect``) and the configured one both fail, the
    attempts alternate between them; a new 1300 (which names its own port)
    and the absence of a 1300 port keep ``current``.
    """
    if redirect is None or code == 1300:
        return current
    return configured if current == redirect else redirect


def describe_failure(exc: BaseException) -> str:
    """A connect attempt's exception in words a user can act on."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, TimeoutError):
        return "timed out waiting for the API handshake / start-up sync"
    if isinstance(exc, ConnectionError) and exc.args and isinstance(exc.args[0], list):
        # ib_async's raiseSyncErrors: the names of the start-up requests that timed out
        return "start-up sync incomplete: " + "; ".join(str(e) for e in exc.args[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def first_connect_failed(
    host: str, port: int, client_id: int, *, attempt: int, failure: str, code: int | None
) -> str:
    """The ``ConnectError`` text of a first connect that gave up, with the right advice."""
    head = (
        f"could not connect to {host}:{port} with client id "
        f"{client_id} after {attempt} attempt(s); last error: {failure}. "
    )
    if code == 326:
        return head + (
            f"Another API session on this TWS uses client id {client_id}: "
            "connect with another client_id (each program connected to one TWS needs "
            "its own), or close the other session."
        )
    if code == 1300:
        return head + "TWS moved its API port: check the port in TWS's API settings."
    return head + (
        "Check that TWS / IB Gateway is running with the API enabled on that port "
        "(Configure > API > Settings: 'Enable ActiveX and Socket Clients', socket port; "
        "7497 TWS paper, 7496 TWS live, 4002 / 4001 Gateway) and that this machine is a "
        "trusted IP there, or set reconnect_attempts=0 to wait for it."
    )
