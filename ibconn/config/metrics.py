"""The ``metrics:`` section of the settings: :class:`MetricsSettings` (see ``docs/metrics.md``)."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import NoDecode

from ibconn.config.sources import building_settings
from ibconn.config.validation_errors import config_error_from_validation
from ibconn.config.values import positive_number

__all__ = ["MetricsSettings"]


class MetricsSettings(BaseModel):
    """Prometheus metrics, readiness and liveness (``metrics:`` section).

    In YAML a ``metrics:`` mapping inside ``ib_connector:``; as environment
    variables ``IBCONN_METRICS__<KEY>`` (``IBCONN_METRICS__SYMBOLS=AAPL,MSFT``).
    See ``docs/metrics.md``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    symbols: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="The only symbols that get a symbol label (data age, fills, position); "
        "every other symbol is counted in the totals only (empty = no symbol labels).",
    )
    lag_interval: float = positive_number(
        0.25, "Seconds between two measurements of the event loop's lag."
    )
    max_loop_lag: float = positive_number(
        2.0, "Largest event loop lag (seconds) at which /healthz still says alive."
    )
    max_data_age: float = positive_number(
        30.0,
        "Largest data age (seconds) of an active market data line at which /readyz still "
        "says ready.",
    )

    @field_validator("symbols", mode="before")
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

    if not TYPE_CHECKING:
        # Hidden from mypy so that the pydantic plugin keeps its typed signature.
        def __init__(self, **values: Any) -> None:
            try:
                super().__init__(**values)
            except ValidationError as exc:
                if building_settings():
                    raise  # validated as ConnectorSettings.metrics: reported as metrics.<key>
                raise config_error_from_validation(exc, type(self), env_prefix="") from None
