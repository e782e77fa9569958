"""Historical bars from TWS, fetched in chunks when a range is longer than one request allows.

TWS serves a limited duration per request at each bar size (one hour of
5-second bars, one day of 1-minute bars, ...). :class:`HistoryFetcher`
splits longer ranges into back-to-back requests, each ending where the
previous one began, merges them and removes the overlap. Every request goes
through ib_async and so through ibconn's pacer, which enforces TWS's
historical pacing rules; a paced request may wait, hence the generous
``historical_timeout``.

A range that fits in one request is sent as given, with TWS's meaning of its
unit ("1 D" is one trading day). A longer one is split by calendar time: "5 D"
of 1-minute bars is the last five calendar days.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ib_async import IB, BarData, BarDataList

from ibconn.contracts.resolver import ResolvedContract
from ibconn.core.arguments import flag_arg, timeout_arg
from ibconn.core.codes import CodeCategory, RecoveryAction, classify
from ibconn.core.logs import get_logger
from ibconn.core.numbers import number_or_none
from ibconn.errors import (
    ConnectionLostError,
    InvalidInputError,
    MarketDataError,
    NotConnectedError,
    PacingError,
    RequestTimeoutError,
)
from ibconn.market_data.bars import DURATION_UNITS, max_request_span, parse_bar_size, parse_duration
from ibconn.market_data.models import Bar, BarSource
from ibconn.market_data.validation import non_negative, positive
from ibconn.wire.ib_compat import end_request, pending_requests, request_result

__all__ = ["WHAT_TO_SHOW", "HistoryFetcher", "check_request"]

_log = get_logger("market_data")

WHAT_TO_SHOW: frozenset[str] = frozenset(
    {
        "TRADES",
        "MIDPOINT",
        "BID",
        "ASK",
        "BID_ASK",
        "ADJUSTED_LAST",
        "HISTORICAL_VOLATILITY",
        "OPTION_IMPLIED_VOLATILITY",
    }
)
"""What historical bars can be built from (TWS's ``whatToShow``)."""

_KEPT_ERRORS = 256


class HistoryFetcher:
    """Fetches historical bars through ``ib_async``, chunked, with TWS's errors as exceptions."""

    def __init__(self, ib_provider: Callable[[], IB], timeout: float) -> None:
        self._ib_provider = ib_provider
        self._timeout = timeout
        self._ib: IB | None = None
        self._errors: OrderedDict[int, tuple[int, str]] = OrderedDict()
        self.requests = 0
        """Historical requests sent so far."""

    async def fetch(
        self,
        resolved: ResolvedContract,
        *,
        duration: str,
        bar_size: str,
        what: str = "TRADES",
        end: datetime | None = None,
        use_rth: bool = False,
        timeout: float | None = None,
    ) -> list[Bar]:
        """Bars of ``bar_size`` over ``duration`` ending at ``end`` (``None``: now), oldest first.

        ``timeout`` (default ``historical_timeout``) bounds each request.

        Raises :class:`InvalidInputError` for a bad duration, bar size or
        ``what``, :class:`MarketDataError` (with TWS's code and text) when TWS
        refuses, :class:`PacingError` on a pacing violation,
        :class:`RequestTimeoutError` after ``historical_timeout`` seconds,
        and :class:`NotConnectedError` / :class:`ConnectionLostError` when the
        link is down or drops.
        """
        count, unit, size_name, seconds, what = check_request(
            duration, bar_size, what, end=end, use_rth=use_rth
        )
        timeout = timeout_arg("timeout", timeout)
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        total = count * DURATION_UNITS[unit]
        span = max_request_span(seconds)
        if span is None or total <= span:
            return await self._request(
                resolved,
                duration=f"{count} {unit}",
                bar_size=size_name,
                seconds=seconds,
                what=what,
                end=end,
                use_rth=use_rth,
                timeout=timeout,
            )
        chunk = f"{span} S" if span <= 86_400 else f"{span // 86_400} D"
        collected: dict[datetime, Bar] = {}
        window_end = end
        request_end = end
        earliest: datetime | None = None
        for _ in range(math.ceil(total / span) + 2):
            bars = await self._request(
                resolved,
                duration=chunk,
                bar_size=size_name,
                seconds=seconds,
                what=what,
                end=request_end,
                use_rth=use_rth,
                timeout=timeout,
            )
            if not bars:
                break
            if window_end is None:
                window_end = bars[-1].end
            for bar in bars:
                collected.setdefault(bar.start, bar)
            first = bars[0].start
            if (window_end - first).total_seconds() >= total - seconds:
                break  # covered (to within one bar: chunks overlap by one)
            if earliest is not None and first >= earliest:
                break  # TWS has nothing older
            earliest = request_end = first
        if window_end is None:
            return []
        start = window_end.timestamp() - total
        return [collected[key] for key in sorted(collected) if key.timestamp() >= start]

    async def _request(
        self,
        resolved: ResolvedContract,
        *,
        duration: str,
        bar_size: str,
        seconds: int,
        what: str,
        end: datetime | None,
        use_rth: bool,
        timeout: float | None,
    ) -> list[Bar]:
        ib = self._ib_provider()
        if not ib.isConnected():
            raise NotConnectedError(
                f"cannot fetch historical bars of {resolved.display_name}: not connected to TWS"
            )
        self._install(ib)
        timeout = self._timeout if timeout is None else timeout
        started = time.monotonic()
        self.requests += 1
        result: BarDataList | None = None
        try:
            result = await ib.reqHistoricalDataAsync(
                resolved.contract,
                end or "",
                duration,
                bar_size,
                what,
                use_rth,
                formatDate=2,
                timeout=timeout,
            )
        except ConnectionError as exc:
            raise ConnectionLostError(
                f"the connection dropped while fetching historical bars of {resolved.display_name}"
            ) from exc
        finally:
            # An error is kept only while its request is in flight (see _on_error): none
            # outlives the request, so none meets a later request that reuses the id.
            error = self._errors.pop(result.reqId, None) if result is not None else None
        if error is not None:
            if classify(error[0], error[1]).category is CodeCategory.NO_DATA:
                return []  # "HMDS query returned no data": an empty range, not a failure
            raise _history_error(resolved, error[0], error[1])
        if not result and time.monotonic() - started >= timeout * 0.99:
            raise RequestTimeoutError(
                f"TWS sent no historical bars of {resolved.display_name} ({duration}, "
                f"{bar_size}, {what}) within {timeout} s; raise historical_timeout if "
                "requests wait for pacing"
            )
        zone = _zone(resolved.time_zone)
        bars: list[Bar] = []
        for item in result:
            bar = _to_bar(item, resolved, seconds, zone)
            if bar is not None:
                bars.append(bar)
        return bars

    def _install(self, ib: IB) -> None:
        if self._ib is not ib:
            ib.errorEvent += self._on_error
            self._ib = ib

    def _on_error(self, req_id: int, code: int, message: str, contract: object) -> None:
        ib = self._ib
        if req_id < 0 or ib is None:
            return
        self._errors[req_id] = (code, message)
        while len(self._errors) > _KEPT_ERRORS:
            self._errors.popitem(last=False)
        if (
            req_id in pending_requests(ib)
            and isinstance(request_result(ib, req_id), BarDataList)
            and classify(code, message).action is RecoveryAction.FAIL_REQUEST
        ):
            # ib_async takes some refusals (321) for warnings and would let the request
            # wait its whole timeout: end it now, the stored error says why.
            end_request(ib, req_id)

    def session_changed(self) -> None:
        """Forget stored errors: request ids start again with every session."""
        self._errors.clear()


def check_request(
    duration: str,
    bar_size: str,
    what: str,
    *,
    end: object = None,
    use_rth: object = False,
) -> tuple[int, str, str, int, str]:
    """Validate a historical request: ``(count, unit, bar size, bar seconds, what)``.

    ``end`` must be ``None`` or a ``datetime`` and ``use_rth`` a bool. Raises
    :class:`InvalidInputError` saying what is allowed.
    """
    if end is not None and not isinstance(end, datetime):
        text = repr(end)
        raise InvalidInputError(
            f"end={text if len(text) <= 60 else text[:57] + '...'} is not allowed; allowed: "
            "None (now) or a datetime (timezone-aware, or naive for UTC)"
        )
    flag_arg("use_rth", use_rth)
    count, unit = parse_duration(duration)
    size_name, seconds = parse_bar_size(bar_size, streaming=False)
    return count, unit, size_name, seconds, _check_what(what)


def _check_what(what: str) -> str:
    upper = what.strip().upper() if isinstance(what, str) else ""
    if upper not in WHAT_TO_SHOW:
        raise InvalidInputError(
            f"what={what!r} is not allowed; use one of: {', '.join(sorted(WHAT_TO_SHOW))}"
        )
    return upper


def _history_error(resolved: ResolvedContract, code: int, text: str) -> Exception:
    info = classify(code, text)
    where = f"historical bars of {resolved.display_name}"
    if info.category is CodeCategory.PACING:
        return PacingError(
            f"TWS refused the request for {where} for pacing ({code}: {text}); try again later",
            code=code,
        )
    return MarketDataError(f"TWS refused {where}: {text} ({code})", code=code, text=text)


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _to_bar(item: BarData, resolved: ResolvedContract, seconds: int, zone: tzinfo) -> Bar | None:
    when = item.date
    if isinstance(when, datetime):
        start = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        start = start.astimezone(UTC)
    elif isinstance(when, date):
        start = datetime(when.year, when.month, when.day, tzinfo=zone).astimezone(UTC)
    else:  # pragma: no cover - ib_async always parses the date
        return None
    values = (item.open, item.high, item.low, item.close)
    if any(number_or_none(v) is None for v in values):
        return None
    volume = non_negative(item.volume)
    wap = positive(item.average) if volume else None
    count = item.barCount if item.barCount >= 0 else None
    return Bar(
        symbol=resolved.display_name,
        con_id=resolved.con_id,
        start=start,
        seconds=seconds,
        open=item.open,
        high=item.high,
        low=item.low,
        close=item.close,
        volume=volume,
        wap=wap,
        count=count,
        source=BarSource.HISTORICAL,
    )
