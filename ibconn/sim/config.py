"""Settings of the simulated gateway: accounts, instruments, prices, limits and clocks.

Build a :class:`SimConfig` in code (``SimConfig(tick_rate=20, rate_limit=100)``)
or load one from YAML with :meth:`SimConfig.from_yaml`::

    seed: 7
    tick_rate: 10            # updates per second per instrument, 0 = manual, "max"
    accounts: [DU0000001]
    start_prices: {AAPL: 185.5, EURUSD: 1.09}
    live_data: [AAPL, ES]    # others get delayed data only
    instruments:             # replaces the defaults when given
      - {symbol: AAPL, sec_type: STK, con_id: 265598, exchange: SMART,
         currency: USD, primary_exchange: NASDAQ, start_price: 190.0}
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ibconn.errors import ConfigError
from ibconn.sim.market.instruments import DEFAULT_INSTRUMENTS, Instrument

__all__ = ["SimConfig"]


class SimConfig(BaseModel):
    """Everything the simulated gateway can be told; every field has a working default."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=False, frozen=False)

    # identity and broker defaults
    accounts: list[str] = Field(default_factory=lambda: ["DU0000001"], min_length=1)
    """Managed accounts (message 15). The first one is the default account."""
    next_valid_id: int = Field(default=1, ge=1)
    """The first order id the gateway hands out (message 9)."""
    read_only: bool = False
    """Refuse orders as a read-only API would (enforced by the broker, part 2)."""

    # instruments and prices
    instruments: tuple[Instrument, ...] = DEFAULT_INSTRUMENTS
    start_prices: dict[str, float] = Field(default_factory=dict)
    """Start price overrides by symbol, display name (``EURUSD``) or local symbol."""
    seed: int = 1
    """Seed of the price process: the same seed gives the same price sequence."""
    tick_rate: float | Literal["max"] = 4.0
    """Price updates per (simulated) second per instrument; ``0`` = only manual steps;
    ``"max"`` = as fast as the subscribers' sockets take them."""
    trade_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    """Chance that a price update also prints a trade (last price, size, volume)."""
    replay_csv: Path | None = None
    """Replay recorded quotes from this CSV instead of the random walk (see prices.py)."""
    replay_loop: bool = False
    live_data: bool | list[str] = True
    """Live market data permissions: all (``True``), none (``False``) or these symbols.
    Without them, reqMktData needs reqMarketDataType(3/4) and gets delayed data."""
    timezone: str = "US/Eastern"
    """The TWS time zone used in intraday bar dates and the handshake time."""
    max_historical_bars: int = Field(default=100_000, ge=1)
    keep_up_to_date_interval: float = Field(default=1.0, gt=0)
    """Simulated seconds between historicalDataUpdate (90) messages."""

    # clock
    clock_speed: float = Field(default=1.0, gt=0)
    """Simulated seconds per real second (bars, tick pacing and timestamps follow it)."""
    start_time: datetime | None = None
    """Simulated time at start-up (default: now)."""

    # pacing and protection
    rate_limit: int = Field(default=50, ge=1)
    """Client messages per one-second sliding window before error 100."""
    flood_disconnect_rate: int | None = Field(default=100, ge=1)
    """Messages in one one-second window that get the client disconnected (None = never)."""
    max_rate_violations: int | None = Field(default=None, ge=1)
    """Rate-limit episodes (error 100s) after which the client is disconnected (None = never)."""
    max_message_size: int = Field(default=16 * 1024 * 1024, ge=1024)
    handshake_timeout: float = Field(default=10.0, gt=0)
    """Seconds a new connection has to finish the handshake and send startApi."""
    write_buffer_high_water: int = Field(default=4 * 1024 * 1024, ge=65536)
    """Paced market data to a client whose unsent bytes exceed this is dropped (counted)."""
    message_log_size: int = Field(default=100_000, ge=0)
    """Received messages (and their timestamps) kept per client."""
    message_log_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    """Bytes (approximate memory) the received-message logs may hold: each client's log,
    the gateway-wide log and the logs kept of departed clients together each stay below it."""
    send_farm_notices: bool = True
    """Send the 2104/2106/2158 "farm connection is OK" notices after startApi."""

    # broker (used by part 2's broker.py)
    initial_cash: float = 1_000_000.0
    base_currency: str = "USD"
    commission_per_share: float = Field(default=0.005, ge=0)
    min_commission: float = Field(default=1.0, ge=0)
    max_order_size: float = Field(default=1_000_000.0, gt=0, allow_inf_nan=False)
    """Largest order quantity accepted (TWS's precautionary Size Limit); larger orders get
    error 383."""
    max_fill_size: float | None = Field(default=None, gt=0)
    """Largest quantity one fill may carry (None = fill the whole order at once)."""
    fill_delay: float = Field(default=0.05, ge=0)
    """Seconds between an order becoming marketable and its (next) fill."""
    pnl_interval: float = Field(default=1.0, gt=0)
    """Seconds between pnl (94) / pnlSingle (95) messages of a reqPnL / reqPnLSingle."""
    account_update_interval: float = Field(default=1.0, gt=0)
    """Seconds between refreshes of subscribed account values and portfolio (price moves)."""

    # persistence
    state_file: Path | None = None
    """Keep broker state (orders, executions, positions, cash, next order id) in this file
    across gateway restarts: loaded at start, written on change and on stop."""
    state_save_delay: float = Field(default=0.2, ge=0)
    """Seconds after a broker change before the state file is written (debounce)."""

    @field_validator("tick_rate")
    @classmethod
    def _check_tick_rate(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            return value
        if value < 0 or math.isnan(value) or math.isinf(value):
            raise ValueError("tick_rate must be >= 0 and finite, or 'max'")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("instruments")
    @classmethod
    def _check_instruments(cls, value: tuple[Instrument, ...]) -> tuple[Instrument, ...]:
        if not value:
            raise ValueError("at least one instrument is needed")
        con_ids = [inst.con_id for inst in value]
        if len(set(con_ids)) != len(con_ids):
            raise ValueError("instrument con_ids must be unique")
        return value

    @property
    def max_mode(self) -> bool:
        """True when ``tick_rate`` is ``"max"``."""
        return self.tick_rate == "max"

    @property
    def tick_interval(self) -> float | None:
        """Simulated seconds between updates; ``None`` for max mode, ``inf`` for manual."""
        if isinstance(self.tick_rate, str):
            return None
        if self.tick_rate == 0:
            return math.inf
        return 1.0 / self.tick_rate

    def has_live_data(self, inst: Instrument) -> bool:
        """Whether live data is permitted for ``inst``."""
        if isinstance(self.live_data, bool):
            return self.live_data
        names = {name.upper() for name in self.live_data}
        return bool(
            names & {inst.symbol.upper(), inst.display_name.upper(), inst.local_symbol.upper()}
        )

    def start_price_of(self, inst: Instrument) -> float:
        """The configured start price of ``inst`` (an override or its own)."""
        for key in (inst.display_name, inst.local_symbol, inst.symbol):
            for name, price in self.start_prices.items():
                if key and name.upper() == key.upper():
                    return price
        return inst.start_price

    @classmethod
    def from_yaml(cls, path: str | Path) -> SimConfig:
        """Load settings from a YAML mapping; raises :class:`ConfigError` on bad content."""
        path = Path(path)
        data = _read_yaml(path, "config")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of settings", key="config")
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SimConfig:
        """Validate a plain mapping (e.g. parsed YAML); raises :class:`ConfigError`.

        An unknown key names the closest known one (``tick_rat``: did you mean
        ``tick_rate``?)."""
        _check_instrument_keys(data.get("instruments"))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors()
            unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
            first = (unknown or errors)[0]  # a typo also leaves a required key missing
            loc = tuple(first.get("loc", ()))
            key = ".".join(str(p) for p in loc)
            message = f"invalid simulator setting {key or '?'}: {first.get('msg')}"
            if first.get("type") == "extra_forbidden" and loc:
                message = f"unknown simulator setting {key!r}{_did_you_mean(loc)}"
            raise ConfigError(
                message, key=key or None, value=first.get("input"), allowed=None
            ) from exc

    @classmethod
    def instruments_from_file(cls, path: str | Path) -> list[Any]:
        """Read an instruments file: a YAML/JSON list of instrument mappings (or a mapping
        with an ``instruments`` list); raises :class:`ConfigError`."""
        data = _read_yaml(Path(path), "instruments")
        if isinstance(data, dict) and "instruments" in data:
            data = data["instruments"]
        if not isinstance(data, list):
            raise ConfigError(
                f"{path} must hold a list of instruments", key="instruments", value=str(path)
            )
        return data


def _read_yaml(path: Path, key: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}", key=key, value=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", key=key) from exc


def _check_instrument_keys(items: Any) -> None:
    """Instruments are dataclasses, whose unknown keys pydantic would drop silently."""
    if not isinstance(items, list | tuple):
        return
    known = {f.name for f in dataclasses.fields(Instrument)}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        for key in item:
            if key not in known:
                loc = ("instruments", index, key)
                raise ConfigError(
                    f"unknown simulator setting 'instruments.{index}.{key}'{_did_you_mean(loc)}",
                    key=f"instruments.{index}.{key}",
                    value=item[key],
                )


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """``" (did you mean 'x'?)"`` for an unknown key at ``loc``, or ``""``."""
    known: list[str] = list(SimConfig.model_fields)
    if len(loc) >= 2 and loc[0] == "instruments":
        known = [f.name for f in dataclasses.fields(Instrument)]
    allowed = f"; allowed: {', '.join(known)}" if len(known) <= 40 else ""
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return allowed
