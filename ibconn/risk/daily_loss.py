"""The daily P&L and the daily loss limit.

The P&L of the day is realized plus unrealized over all positions (in
``risk.base_currency``) minus its value at the start of the trading day
(``risk.trading_day_start`` in ``risk.timezone``), or at the first
observation of the day when the connector starts later. A loss beyond
``risk.max_daily_loss`` trips the kill switch once per trading day.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

from ibconn.config.settings import RiskSettings
from ibconn.core.logs import get_logger
from ibconn.risk.limits import money
from ibconn.risk.models import Holding

__all__ = ["DailyPnl", "daily_loss_breach", "trading_day"]

_log = get_logger("risk")


def trading_day(now: datetime, settings: RiskSettings) -> date:
    """The trading day ``now`` belongs to: days start at ``trading_day_start`` in ``timezone``."""
    local = now.astimezone(settings.zone)
    start = settings.trading_day_start
    offset = timedelta(hours=start.hour, minutes=start.minute, seconds=start.second)
    return (local - offset).date()


def daily_loss_breach(pnl: float | None, limits: RiskSettings) -> str | None:
    """Why the kill switch trips for a daily P&L of ``pnl``, or ``None`` when within
    ``risk.max_daily_loss`` (or unknown, or no limit)."""
    limit = limits.max_daily_loss
    if limit is None or pnl is None or -pnl <= limit:
        return None
    currency = limits.base_currency
    return f"daily loss {money(-pnl, currency)} beyond max_daily_loss {money(limit, currency)}"


class DailyPnl:
    """The trading day's P&L, kept against per-position baselines."""

    def __init__(self, limits: RiskSettings) -> None:
        self._limits = limits
        self.day: date | None = None
        """The trading day of the last update (``None`` before the first)."""
        self.value: float | None = None
        """The P&L of the day at the last update (``None`` until known)."""
        self._baselines: dict[tuple[str, int], float] = {}
        self._at_start: set[tuple[str, int]] = set()
        self._tripped = False

    @property
    def loss(self) -> float:
        """Today's loss as a positive amount (0 without a loss)."""
        pnl = self.value
        return -pnl if pnl is not None and pnl < 0 else 0.0

    def update(
        self,
        now: datetime,
        holdings: Sequence[Holding],
        fx_rate: Callable[[str], float | None],
    ) -> float | None:
        """Realized plus unrealized since the start of the trading day (base currency)."""
        today = trading_day(now, self._limits)
        if self.day != today:
            first = self.day is None
            self.day = today
            self._baselines.clear()
            self._tripped = False
            self._at_start = {(h.account, h.con_id) for h in holdings}
            if not first:
                _log.info("risk: new trading day {}; daily P&L starts at 0", today)
        totals: dict[tuple[str, int], float] = {}
        for h in holdings:
            fx = fx_rate(h.currency)
            if fx is None:
                continue
            key = (h.account, h.con_id)
            unrealized = h.unrealized_pnl
            if unrealized is None and h.quantity:
                continue  # not marked yet: its P&L is unknown
            totals[key] = totals.get(key, 0.0) + ((unrealized or 0.0) + h.realized_pnl) * fx
        pnl = 0.0
        known = False
        for key, total in totals.items():
            if key not in self._baselines:
                # There at the day's start: from now on. Opened during the day: all of it.
                self._baselines[key] = total if key in self._at_start else 0.0
            pnl += total - self._baselines[key]
            known = True
        self.value = pnl if known or not holdings else None
        return self.value

    def trip(self, pnl: float | None) -> str | None:
        """The reason to trip the kill switch for ``pnl``, once per trading day; ``None``
        when within the limit or already tripped today."""
        if self._tripped:
            return None
        reason = daily_loss_breach(pnl, self._limits)
        if reason is not None:
            self._tripped = True
        return reason
