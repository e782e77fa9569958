"""Readiness and liveness: what ``/readyz`` and ``/healthz`` answer, as pure functions.

* **Liveness** (``/healthz``): the process and its event loop respond, and the
  loop's lag is below ``metrics.max_loop_lag``. A failing liveness means restart
  the process.
* **Readiness** (``/readyz``): connected, no data farm broken, and every active
  market data line's data younger than ``metrics.max_data_age``. A failing
  readiness means do not rely on this connector now (it may recover by itself).
"""

from __future__ import annotations

from dataclasses import dataclass

from ibconn.connection.session import ConnectionState
from ibconn.status import ConnectorStatus

__all__ = ["Verdict", "liveness", "readiness"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """An answer of ``/healthz`` or ``/readyz``: ok or not, and why not."""

    ok: bool
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The JSON body of the answer."""
        return {"ok": self.ok, "reasons": list(self.reasons)}


def liveness(lag: float, max_lag: float) -> Verdict:
    """Alive while the event loop's lag ``lag`` is at most ``max_lag`` seconds."""
    if lag > max_lag:
        return Verdict(False, (f"event loop lag {lag:.3f} s > {max_lag} s",))
    return Verdict(True)


def readiness(status: ConnectorStatus, max_data_age: float) -> Verdict:
    """Ready when connected, no farm is broken and no active line's data is older
    than ``max_data_age`` seconds."""
    reasons: list[str] = []
    if status.state is not ConnectionState.CONNECTED:
        reasons.append(f"not connected: state {status.state.value}")
    reasons.extend(
        f"data farm {farm.farm} is broken ({farm.code})"
        for farm in status.farms
        if farm.state == "broken"
    )
    reasons.extend(
        f"{line.kind} data of {line.symbol} is {line.data_age:.1f} s old (> {max_data_age} s)"
        for line in status.market_data.lines
        if line.active and line.data_age is not None and line.data_age > max_data_age
    )
    return Verdict(not reasons, tuple(reasons))
