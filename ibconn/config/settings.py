"""Connector settings: :class:`ConnectorSettings`.

Settings come from four places; the first that sets a key wins:

1. keyword arguments (``ConnectorSettings(port=4002)``),
2. environment variables named ``IBCONN_<KEY>`` (``IBCONN_PORT=4002``, any case),
3. the ``ib_connector:`` section of a YAML file, read by
   :meth:`ConnectorSettings.from_yaml`,
4. the defaults below.

Every mistake (a value out of range, an unknown key in any of the three
sources, an unreadable file) raises one :class:`~ibconn.errors.ConfigError`
that names the key, the value and what is allowed. A typo is never ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ibconn.config.metrics import MetricsSettings
from ibconn.config.risk import RiskSettings
from ibconn.config.sources import (
    ENV_PREFIX,
    NESTED_DELIMITER,
    StrictEnvSource,
    YamlSectionSource,
    building,
    origin_of,
    reading_yaml,
)
from ibconn.config.validation_errors import config_error_from_validation
from ibconn.config.values import (
    HOST_ALLOWED,
    LOG_FILE_ALLOWED,
    LOG_FORMATS,
    LOG_LEVELS,
    LogFormat,
    LogLevel,
    MarketDataType,
    host_problem,
    positive_number,
)
from ibconn.config.yaml_file import check_path
from ibconn.errors import ConfigError

__all__ = [
    "ConnectorSettings",
    "MarketDataType",  # the types of its fields, importable with it
    "MetricsSettings",
    "RiskSettings",
]


class ConnectorSettings(BaseSettings):
    """Immutable settings of one connector.

    Build with keywords, ``IBCONN_*`` environment variables and
    :meth:`from_yaml`; bad input raises :class:`~ibconn.errors.ConfigError`.
    Use :meth:`replace` for a changed copy.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        validate_default=True,
        env_nested_delimiter=NESTED_DELIMITER,  # IBCONN_RISK__MAX_POSITION=...
    )

    host: str = Field(
        "127.0.0.1", min_length=1, description="Host name or address of TWS / IB Gateway."
    )
    port: int = Field(
        7497,
        ge=1,
        le=65535,
        description="TWS API socket port (7497 TWS paper, 7496 TWS live, 4002/4001 Gateway).",
    )
    client_id: int = Field(
        1, ge=0, description="API client id; must be unique among the sessions on one TWS."
    )
    reconnect_attempts: int = Field(
        5,
        ge=0,
        description="Attempts of the first connect() before it raises ConnectError; 0 keeps "
        "trying. A session that was up is reconnected forever (see reconnect_alert_every).",
    )
    connect_retry_interval: float = positive_number(
        0.25,
        "Seconds before the first retry of the first connect(); doubles with each retry "
        "(capped at reconnect_max_interval), so a first connect fails within seconds.",
    )
    reconnect_interval: float = positive_number(
        10.0, "Seconds before the first retry of a reconnect; the base of its backoff."
    )
    reconnect_max_interval: float = positive_number(
        300.0, "Cap in seconds of the backoff delay; at least reconnect_interval."
    )
    reconnect_fast_window: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds after a session that was up is lost during which the retries "
        "come every reconnect_fast_interval (a short outage costs the outage plus "
        "milliseconds); then the backoff from reconnect_interval. 0: backoff at once.",
    )
    reconnect_fast_interval: float = positive_number(
        0.025, "Seconds between the retries of the reconnect_fast_window."
    )
    reconnect_alert_every: int = Field(
        10,
        ge=1,
        description="A reconnect publishes a CRITICAL alert after every this many failed "
        "attempts in a row (it never gives up; disconnect() stops it).",
    )
    market_data_type: MarketDataType = Field(
        MarketDataType.DELAYED,
        description="REALTIME, FROZEN, DELAYED or DELAYED_FROZEN (any case).",
    )
    log_level: LogLevel = Field(
        "INFO",
        description="Level of the log_file sink and of enable_logging() sinks given no level: "
        "TRACE .. CRITICAL (any case); turns no output on by itself.",
    )
    log_file: Path | None = Field(
        None,
        description="Write ibconn's log (every category, ib_async's records included) to this "
        "file from log_level on, once the connector is created; None: no file.",
    )
    log_format: LogFormat = Field(
        "text", description='Format of the log_file: "text" lines or "json" lines.'
    )
    market_data_lines: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Market data lines the account may hold at once (TWS's default 100, more "
        "with quote boosters): connector.status() reports the lines used against it.",
    )
    max_requests_per_second: int = Field(
        50, ge=1, le=50, description="Outgoing API messages per second; TWS allows at most 50."
    )
    connection_timeout: float = positive_number(30.0, "Seconds allowed for one connect handshake.")
    market_data_timeout: float = positive_number(
        10.0, "Seconds to wait for the first answer to a market data or contract request."
    )
    heartbeat_interval: float = positive_number(
        10.0, "Seconds between heartbeat requests (reqCurrentTime) on an idle link."
    )
    heartbeat_timeout: float = positive_number(
        5.0, "Seconds a heartbeat may go unanswered before the link counts as dead."
    )
    heartbeat_flood_timeout: float = positive_number(
        30.0,
        "Seconds heartbeats may stay unanswered while messages keep arriving (answers queued "
        "behind a flood) before the link counts as dead: a TWS that streams data but answers "
        "no request.",
    )
    resync_timeout: float = positive_number(
        10.0, "Seconds allowed for the resync of orders, positions and subscriptions."
    )
    degraded_timeout: float = positive_number(
        60.0, "Seconds to wait for 1101/1102 after code 1100 before reconnecting."
    )
    account: str = Field(
        "", description='Account code to trade; "" means the only or first managed account.'
    )
    readonly: bool = Field(False, description="Connect read-only: no orders can be placed.")
    # -- receive path (docs/benchmarks.md) --
    fast_receive: bool = Field(
        True,
        description="Use ibconn's linear-time receive path inside the ib_async client "
        "(ib_async 2.1.x only; other versions fall back to ib_async's own path).",
    )
    fast_ticks: bool = Field(
        True,
        description="Decode the ticks of ibconn's own market data lines in the receive path, "
        "without ib_async's per-tick objects (needs fast_receive); their ib_async Ticker keeps "
        "its values but not ticker.ticks / ticker.tickByTicks.",
    )
    tune_gc: bool = Field(
        False,
        description="After connecting, freeze the objects alive and raise the GC's gen0 "
        "threshold for heavy tick-by-tick streams; process-wide, undone by disconnect().",
    )
    # -- orders (docs/orders.md) --
    order_ack_timeout: float = positive_number(
        10.0,
        "Seconds a place, modify or cancel call waits for TWS's acknowledgement before it "
        "raises (the order stays tracked).",
    )
    cancel_orders_on_disconnect: bool = Field(
        False,
        description="Cancel this connector's working orders in disconnect(); by default they "
        "keep working at the broker.",
    )
    # -- positions (docs/positions.md) --
    reconcile_interval: float = positive_number(
        60.0,
        "Seconds between reconciliations of ibconn's positions with the broker's "
        "(reqPositions); they also run after every connect and reconnect.",
    )
    reconcile_avg_cost_tolerance: float = Field(
        0.0001,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Relative difference of average cost (0.0001 = 0.01 %) beyond which "
        "reconciliation sets a position's average cost to the broker's.",
    )
    # -- pacing (docs/pacing.md) --
    pacing_window_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Seconds added to TWS's one-second window: at most max_requests_per_second "
        "messages leave in any window of 1 + this many seconds (covers timing jitter).",
    )
    pacing_backlog_alert_after: float = positive_number(
        5.0, "Seconds the pacing queue may stay non-empty before a 'pacing' alert."
    )
    historical_identical_window: float = positive_number(
        15.0, "Seconds before an identical historical data request may be sent again."
    )
    historical_burst_window: float = positive_number(
        2.0, "Window in seconds of the limit of 5 requests per contract, exchange and type."
    )
    historical_window: float = positive_number(
        600.0, "Window in seconds of the limit of 60 historical data requests."
    )
    historical_pacing_backoff: float = positive_number(
        10.0,
        "Seconds the historical queue pauses after a 162 pacing violation; doubles with each "
        "further violation within historical_window, capped at historical_window.",
    )
    historical_rules_max_bar_seconds: int = Field(
        30,
        ge=0,
        description="Historical requests with bars up to this many seconds follow IB's "
        "small-bar pacing rules (30 as IB documents; 0 = none, 86400 = up to daily bars).",
    )
    # -- market data (docs/market_data.md) --
    quote_buffer: int = Field(
        64,
        ge=1,
        le=1_000_000,
        description="Items a quote stream's consumer may leave unread; quotes conflate to "
        "the latest, so this bounds the status events kept between them.",
    )
    tick_buffer: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Ticks a consumer may leave unread before the oldest are dropped (counted).",
    )
    trade_buffer: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Trades a consumer may leave unread before the oldest are dropped (counted).",
    )
    bar_buffer: int = Field(
        1_000,
        ge=1,
        le=1_000_000,
        description="Bars a consumer may leave unread; one more ends its stream with "
        "StreamOverflowError (bars are never dropped silently).",
    )
    crossed_quote_tolerance: float = Field(
        0.0,
        ge=0,
        le=0.5,
        allow_inf_nan=False,
        description="Fraction of the mid price by which a bid may exceed the ask before a "
        "quote is flagged crossed (0 = every crossed quote).",
    )
    historical_timeout: float = positive_number(
        600.0,
        "Seconds one historical data request may take, including its wait for pacing.",
    )
    # -- alerts (docs/alerts.md) and risk (docs/risk.md) --
    alert_coalesce_window: float = Field(
        10.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds during which repeats of the same alert are counted instead of "
        "delivered; one summary with the count follows at the window's end (0 = off).",
    )
    risk: RiskSettings = Field(
        default_factory=RiskSettings,
        description="Pre-trade risk limits, daily loss limit and kill switch: a 'risk:' "
        "mapping in YAML, IBCONN_RISK__<KEY> variables (see RiskSettings, docs/risk.md).",
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings,
        description="Prometheus metrics, readiness and liveness: a 'metrics:' mapping in YAML, "
        "IBCONN_METRICS__<KEY> variables (see MetricsSettings, docs/metrics.md).",
    )
    # -- the order journal (docs/journal.md) --
    journal: bool = Field(
        True,
        description="Keep the order journal: every order event, the kill switch and the exit "
        "plans in a SQLite file, restored when a connector starts again (false = off).",
    )
    journal_path: Path | None = Field(
        None,
        description="The journal's SQLite file; None = $XDG_STATE_HOME/ibconn/"
        "journal-<host>-<port>.sqlite3 (~/.local/state without XDG_STATE_HOME), shared by "
        "every client of one gateway.",
    )
    journal_flush_interval: float = Field(
        0.05,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description="Seconds the journal's writer gathers events before it commits them as "
        "one batch (the most a crash of the process can lose).",
    )

    if not TYPE_CHECKING:
        # Hidden from mypy so that the pydantic plugin keeps its typed signature.
        def __init__(self, **values: Any) -> None:
            _construct(self, values)

    @field_validator("market_data_type", "log_level", "log_format", mode="before")
    @classmethod
    def _upper_case(cls, value: object, info: ValidationInfo) -> object:
        # Only a recognised name is normalised, so an error still shows the input as given.
        if isinstance(value, str):
            upper = value.strip().upper()
            if info.field_name == "log_format":
                lower = value.strip().lower()
                return lower if lower in LOG_FORMATS else value
            allowed = set(MarketDataType) if info.field_name == "market_data_type" else LOG_LEVELS
            if upper in allowed:
                return upper
        return value

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        problem = host_problem(value)
        if problem is not None:
            raise PydanticCustomError(
                "invalid_host",
                "{problem}",
                {"problem": problem, "allowed": HOST_ALLOWED},
            )
        return value

    @field_validator("log_file", mode="before")
    @classmethod
    def _valid_log_file(cls, value: object) -> object:
        if value is None:
            return None
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
        if isinstance(text, str) and text.strip() and not Path(text).expanduser().is_dir():
            return Path(text).expanduser()
        raise PydanticCustomError(
            "invalid_log_file",
            "must be the path of a file",
            {"allowed": LOG_FILE_ALLOWED},
        )

    @field_validator("reconnect_max_interval")
    @classmethod
    def _cap_not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("reconnect_interval")
        if base is not None and value < base:
            raise PydanticCustomError(
                "below_reconnect_interval",
                "must be >= reconnect_interval ({base})",
                {"base": base, "allowed": f"a number >= reconnect_interval ({base})"},
            )
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _as_config_error(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(data)
        except ValidationError as exc:
            raise config_error_from_validation(exc, cls, origin=origin_of) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords, then ``IBCONN_*`` variables, then the YAML file of :meth:`from_yaml`."""
        return (
            init_settings,
            StrictEnvSource(settings_cls),
            YamlSectionSource(settings_cls),
        )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> Self:
        """Load the ``ib_connector:`` section of ``path``.

        ``overrides`` beat ``IBCONN_*`` variables, which beat the file.
        """
        check_path(path)
        with reading_yaml(path):
            return cls(**overrides)

    def replace(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied."""
        return type(self)(**{**self.model_dump(), **changes})

    @property
    def market_data_type_code(self) -> int:
        """TWS's number for ``market_data_type`` (1 REALTIME .. 4 DELAYED_FROZEN)."""
        return self.market_data_type.code

    def __setattr__(self, name: str, value: Any) -> None:
        raise ConfigError(
            f"settings are immutable: cannot set {name} = {value!r}; "
            f"use settings.replace({name}=...) for a changed copy",
            key=name,
            value=value,
            allowed="no change after creation",
        )

    def __delattr__(self, name: str) -> None:
        raise ConfigError(
            f"settings are immutable: cannot delete {name}", key=name, allowed="no change"
        )


def _construct(settings: ConnectorSettings, values: dict[str, Any]) -> None:
    with building(values):
        try:
            BaseSettings.__init__(settings, **values)
        except RecursionError:
            raise ConfigError(
                "invalid settings: a value nests collections too deeply to be read",
                key=None,
                allowed="mappings and lists nested at most a few hundred levels",
            ) from None
