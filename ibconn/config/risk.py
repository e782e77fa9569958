"""The ``risk:`` section of the settings: :class:`RiskSettings` (see ``docs/risk.md``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import time as dt_time
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import NoDecode

from ibconn.config.sources import building_settings
from ibconn.config.validation_errors import config_error_from_validation
from ibconn.config.values import positive_number

__all__ = ["RiskSettings"]

_NO_LIMIT = frozenset({"", "none", "null", "off"})
_Quantity = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Rate = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _limit(description: str, *, zero_allowed: bool = False) -> Any:
    if zero_allowed:
        return Field(None, ge=0, allow_inf_nan=False, description=description)
    return Field(None, gt=0, allow_inf_nan=False, description=description)


class RiskSettings(BaseModel):
    """Pre-trade risk limits, the daily loss limit and the kill switch (``risk:`` section).

    Every limit is off (``None`` / ``null``) unless set. Quantities are in
    shares or contracts, money in ``base_currency``. In YAML they sit in a
    ``risk:`` mapping inside ``ib_connector:``; as environment variables they
    are ``IBCONN_RISK__<KEY>`` (``IBCONN_RISK__MAX_ORDER_QUANTITY=500``;
    lists as ``AAPL,MSFT`` or JSON, mappings as JSON). See ``docs/risk.md``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    read_only: bool = Field(
        False,
        description="Refuse every order before it is sent (the connection stays fully "
        "usable; the connection setting readonly refuses orders too).",
    )
    max_order_quantity: float | None = _limit("Largest quantity of one order.")
    max_order_notional: float | None = _limit(
        "Largest value of one order: price x quantity x multiplier, in base_currency "
        "(the limit price, or the last / mark price for a market order)."
    )
    max_position: float | None = _limit(
        "Largest absolute position per instrument (worst case: the position plus every "
        "working order on the same side); the default for instruments not in "
        "max_position_per_symbol. 0 = no position may be opened.",
        zero_allowed=True,
    )
    max_position_per_symbol: dict[str, _Quantity] = Field(
        default_factory=dict,
        description="Per-instrument overrides of max_position: symbol, local symbol "
        "or conId -> largest absolute position.",
    )
    max_gross_exposure: float | None = _limit(
        "Largest sum over all instruments of |worst-case position| x price x multiplier, "
        "in base_currency."
    )
    max_open_orders: int | None = Field(
        None, ge=0, description="Largest number of working orders of this connector."
    )
    max_orders_per_second: float | None = _limit(
        "Largest rate of new orders that open or increase a position: a burst of "
        "floor(rate) (at least 1), then one every 1/rate seconds; faster ones are refused, "
        "never delayed (closing orders always pass)."
    )
    allowed_symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Only these symbols may be traded (empty = every symbol)."
    )
    blocked_symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="These symbols may not be traded."
    )
    max_daily_loss: float | None = _limit(
        "Loss (realized plus unrealized since the start of the trading day, in "
        "base_currency) that trips the kill switch; positive number."
    )
    trading_day_start: dt_time = Field(
        dt_time(0, 0),
        description="Local time (HH:MM in timezone) at which the trading day, and the "
        "daily loss, starts again.",
    )
    timezone: str = Field(
        "America/New_York",
        min_length=1,
        description="IANA time zone of trading_day_start (e.g. America/New_York, UTC).",
    )
    warning_threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Fraction of a limit at which the exposure monitor sends a warning "
        "alert (a breach alerts at 1.0).",
    )
    kill_switch_global_cancel: bool = Field(
        True,
        description="The kill switch also sends TWS's global cancel, which cancels the "
        "orders of every API client and those entered in TWS by hand.",
    )
    base_currency: str = Field(
        "USD",
        min_length=3,
        max_length=3,
        description="Currency of the money limits (the account's base currency).",
    )
    fx_rates: dict[str, _Rate] = Field(
        default_factory=dict,
        description="Value of one unit of a currency in base_currency, used when TWS "
        "reports no ExchangeRate for it (e.g. {EUR: 1.08}).",
    )
    exposure_interval: float = positive_number(
        1.0, "Seconds between re-evaluations of exposure and daily loss as prices move."
    )

    @field_validator(
        "max_order_quantity",
        "max_order_notional",
        "max_position",
        "max_gross_exposure",
        "max_open_orders",
        "max_orders_per_second",
        "max_daily_loss",
        mode="before",
    )
    @classmethod
    def _none_words(cls, value: object) -> object:
        # Environment variables are text: "", "none", "null" and "off" mean no limit.
        if isinstance(value, str) and value.strip().lower() in _NO_LIMIT:
            return None
        return value

    @field_validator("allowed_symbols", "blocked_symbols", mode="before")
    @classmethod
    def _symbol_list(cls, value: object) -> object:
        if isinstance(value, str):  # an environment variable: "AAPL,MSFT" or a JSON list
            text = value.strip()
            if text.startswith("["):
                with contextlib.suppress(ValueError):
                    value = json.loads(text)
            if isinstance(value, str):
                value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple | set | frozenset):
            return tuple(sorted({str(item).strip().upper() for item in value}))
        return value

    @field_validator("max_position_per_symbol", "fx_rates", mode="before")
    @classmethod
    def _upper_keys(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return {str(key).strip().upper(): item for key, item in value.items()}
        return value

    @field_validator("base_currency", mode="before")
    @classmethod
    def _currency_upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "unknown_time_zone",
                "unknown time zone",
                {"allowed": "an IANA time zone name such as America/New_York or UTC"},
            ) from None
        return value

    if not TYPE_CHECKING:
        # Hidden from mypy so that the pydantic plugin keeps its typed signature.
        def __init__(self, **values: Any) -> None:
            try:
                super().__init__(**values)
            except ValidationError as exc:
                if building_settings():
                    raise  # validated as ConnectorSettings.risk: reported there, as risk.<key>
                raise config_error_from_validation(exc, type(self), env_prefix="") from None

    def __hash__(self) -> int:  # the two mappings are not hashable themselves
        return hash(
            tuple(
                tuple(sorted(value.items())) if isinstance(value, dict) else value
                for value in self.__dict__.values()
            )
        )

    @property
    def zone(self) -> ZoneInfo:
        """``timezone`` as a :class:`zoneinfo.ZoneInfo`."""
        return ZoneInfo(self.timezone)

    @property
    def limits_set(self) -> bool:
        """Whether any limit, the symbol lists or read-only mode is in force."""
        return any(
            bool(value) if isinstance(value, bool | tuple | dict) else value is not None
            for name, value in self.__dict__.items()
            if name.startswith(("max_", "allowed_", "blocked_")) or name == "read_only"
        )
