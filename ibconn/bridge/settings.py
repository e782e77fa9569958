"""The bridge's settings: the ``bridge:`` section of the YAML file, ``IBCONN_BRIDGE__*`` and flags.

The first source that sets a key wins: keyword arguments (the CLI's flags), then
environment variables ``IBCONN_BRIDGE__<KEY>`` (``IBCONN_BRIDGE__TLS__CA_FILE`` for a
key of ``tls``; lists as ``AAPL,MSFT`` or JSON), then the top-level ``bridge:`` mapping
of the same YAML file whose ``ib_connector:`` section holds the connector's settings,
then the defaults. Durations are seconds, or text with a unit (``"7d"``, ``"24h"``,
``"30m"``, ``"10s"``). Every mistake raises one :class:`~ibconn.errors.ConfigError`
naming ``bridge.<key>``, the value and what is allowed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from ibconn.bridge.protocol import STREAMS, check_prefix
from ibconn.config.validation_errors import config_error_from_validation
from ibconn.config.yaml_file import read_yaml_section
from ibconn.errors import ConfigError, InvalidInputError

__all__ = ["ENV_PREFIX", "BridgeSettings", "TlsSettings", "parse_duration"]

ENV_PREFIX = "IBCONN_BRIDGE__"
"""Prefix of the environment variables of the ``bridge:`` section."""

YAML_SECTION = "bridge"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*", re.IGNORECASE)
DURATION_ALLOWED = "seconds (a number > 0), or text such as '10s', '30m', '24h', '7d'"
_URL_SCHEMES = ("nats://", "tls://", "ws://", "wss://")


def parse_duration(value: object) -> object:
    """``"7d"`` -> ``604800.0``; numbers pass; anything else is left for validation to refuse."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise PydanticCustomError(
                "invalid_duration", "not a duration", {"allowed": DURATION_ALLOWED}
            )
        return float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if isinstance(value, bool):
        raise PydanticCustomError(
            "invalid_duration", "not a duration", {"allowed": DURATION_ALLOWED}
        )
    return value


def _names(value: object) -> object:
    """A list of names from ``"a,b"`` text or a JSON list (environment variables)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                return value
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0, allow_inf_nan=False)]
_Names = Annotated[tuple[str, ...], BeforeValidator(_names)]


class TlsSettings(BaseModel):
    """TLS to the NATS server (``bridge.tls``): files handed to nats-py's SSL context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(None, description="CA certificates to verify the server.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Private key of cert_file.")
    hostname: str | None = Field(None, description="Server name to verify, if not the URL's.")

    @property
    def enabled(self) -> bool:
        """Whether any TLS file is set (then the connection uses TLS)."""
        return any(path is not None for path in (self.ca_file, self.cert_file, self.key_file))


class BridgeSettings(BaseModel):
    """Settings of ``ibconn bridge`` (the ``bridge:`` section); see ``docs/bridge.md``."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL; several, comma-separated, for a cluster.",
    )
    user: str | None = Field(None, description="NATS user (with password).")
    password: str | None = Field(None, description="NATS password.", repr=False)
    token: str | None = Field(None, description="NATS token.", repr=False)
    creds_file: Path | None = Field(None, description="NATS credentials file (JWT and NKey).")
    tls: TlsSettings = Field(
        default_factory=TlsSettings, description="TLS files for the NATS connection."
    )
    subject_prefix: str = Field("ibconn", description="First token(s) of every subject.")
    streams: _Names = Field(STREAMS, description="Which JetStream streams to publish.")
    market_data: _Names = Field((), description="Symbols whose market data is published.")
    bar_size: str = Field("5 secs", description="Bar size of the published bars.")
    retention: Duration = Field(7 * 86400.0, description="Max age of stream messages.")
    fill_dedupe_window: Duration = Field(
        86400.0, description="JetStream's duplicate window of the fills stream (exec ids)."
    )
    command_dedupe_window: Duration = Field(
        86400.0, description="How long a command's reply is kept by its idempotency key."
    )
    heartbeat_interval: Duration = Field(1.0, description="Seconds between heartbeats.")
    snapshot_interval: Duration = Field(
        0.2, description="Seconds a snapshot write waits to gather changes (coalescing)."
    )
    market_data_buffer: int = Field(
        10000, ge=1, description="Trades and bars held per kind while NATS is slow (then dropped)."
    )
    publish_retry_interval: Duration = Field(
        0.5, description="Seconds between retries of a JetStream publish while NATS is down."
    )
    publish_timeout: Duration = Field(
        5.0, description="Seconds to wait for JetStream's acknowledgement of one publish."
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        urls = [part.strip() for part in value.split(",")]
        if not all(url.startswith(_URL_SCHEMES) and len(url) > len("nats://") for url in urls):
            raise PydanticCustomError(
                "invalid_url",
                "not a NATS URL",
                {"allowed": "nats://host:port (or tls://, ws://, wss://), comma-separated"},
            )
        return value

    @field_validator("subject_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        try:
            return check_prefix(value)
        except InvalidInputError as exc:
            raise PydanticCustomError(
                "invalid_prefix",
                "not a subject prefix",
                {"allowed": "tokens of letters, digits, '_' and '-' separated by dots"},
            ) from exc

    @field_validator("streams")
    @classmethod
    def _known_streams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in STREAMS]
        if unknown:
            raise PydanticCustomError(
                "unknown_stream",
                "unknown stream",
                {"allowed": "a list of " + ", ".join(STREAMS)},
            )
        return tuple(dict.fromkeys(value))

    @field_validator("market_data")
    @classmethod
    def _symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not name.strip() for name in value):
            raise PydanticCustomError(
                "empty_symbol", "empty symbol", {"allowed": "a list of non-empty symbols"}
            )
        return tuple(dict.fromkeys(name.strip() for name in value))

    @field_validator("fill_dedupe_window")
    @classmethod
    def _window_within_retention(cls, value: float, info: Any) -> float:
        retention = info.data.get("retention")
        if retention is not None and value > retention:
            raise PydanticCustomError(
                "window_above_retention",
                "longer than retention",
                {"allowed": f"a duration <= retention ({retention} s)"},
            )
        return value

    @property
    def urls(self) -> list[str]:
        """The server URLs, for nats-py."""
        return [part.strip() for part in self.url.split(",")]

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Self:
        """Keyword ``overrides``, then ``IBCONN_BRIDGE__*``, then ``path``'s ``bridge:`` section."""
        data: dict[str, Any] = {}
        if path is not None:
            data.update(_yaml_section(path))
        _merge(data, _environment())
        _merge(data, {k: v for k, v in overrides.items() if v is not None})
        return cls.build(data)

    @classmethod
    def build(cls, data: dict[str, Any]) -> Self:
        """Validate ``data``; a mistake is one :class:`ConfigError` naming ``bridge.<key>``."""
        try:
            return _Section.model_validate({YAML_SECTION: data}).bridge  # type: ignore[return-value]
        except ValidationError as exc:
            raise config_error_from_validation(exc, _Section, env_prefix="") from None


class _Section(BaseModel):
    """The holder that makes error locations read ``bridge.<key>``."""

    model_config = ConfigDict(extra="forbid")

    bridge: BridgeSettings


def _yaml_section(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return read_yaml_section(path, YAML_SECTION)
    except ConfigError as exc:
        if exc.key == YAML_SECTION and exc.value is None:  # no bridge: section: the defaults
            return {}
        raise


def _environment() -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, value in os.environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(
                    f"environment variable {name} sets a key inside {part!r}, which is not a "
                    "section",
                    key=name,
                    value=value,
                    allowed="IBCONN_BRIDGE__<KEY> or IBCONN_BRIDGE__TLS__<KEY>",
                )
        target[path[-1]] = value
    return data


def _merge(into: dict[str, Any], values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
