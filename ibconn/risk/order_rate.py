"""``risk.max_orders_per_second``: a leaky bucket on opening orders that refuses, never delays.

A strategy stuck in a loop can send orders far faster than anyone meant; TWS
only paces them (50 messages a second) and fills every one. This cap lets a
burst of ``max(1, floor(rate))`` new orders that open or increase a position
through at once, then one every ``1 / rate`` seconds, and refuses the rest
with ``RiskRejectedError(limit="max_orders_per_second")``
(:func:`ibconn.risk.limits.check_order` asks it last). Orders that close or
reduce a position (protective exits among them) pass, as under the kill
switch. It refuses rather than delays because an order held back is placed
on a decision that is stale by the time it goes out; the caller learns at
once and decides again.

The bucket is :class:`ibconn.pacing.windows.Spacer` (the generic cell rate
algorithm, a leaky bucket in virtual-scheduling form): exact and synchronous,
as the pre-trade check must be (see ``docs/architecture.md``, "Dependencies",
for why not ``aiolimiter``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ibconn.errors import RiskRejectedError
from ibconn.pacing.windows import Spacer
from ibconn.risk.models import RiskLimit

__all__ = ["OrderRate"]


class OrderRate:
    """Admits new orders at ``rate`` a second after a burst of ``floor(rate)`` (at least 1)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = max(1, math.floor(rate))
        self._spacer = Spacer(rate, self._burst)
        self._clock = clock

    def refusal(self, what: str) -> RiskRejectedError | None:
        """The refusal of one more order now, or ``None`` (and the order is counted)."""
        now = self._clock()
        free = self._spacer.next_free(now)
        if free > now:
            wait = free - now
            return RiskRejectedError(
                f"{what} refused: orders come faster than risk.max_orders_per_second "
                f"{self._rate:g} (a burst of {self._burst}, then one every "
                f"{1 / self._rate:.3g} s); the next order passes in {wait:.3f} s",
                limit=RiskLimit.MAX_ORDERS_PER_SECOND.value,
                limit_value=self._rate,
                order_value=round(wait, 6),
            )
        self._spacer.record(now)
        return None
