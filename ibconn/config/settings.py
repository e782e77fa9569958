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

import contextlib
import difflib
import enum
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from ibconn.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "YAML_SECTION",
    "ConnectorSettings",
    "LogLevel",
    "MarketDataType",
    "config_error_from_validation",
    "read_yaml_section",
]

ENV_PREFIX = "IBCONN_"
"""Prefix of the environment variables that set :class:`ConnectorSettings` keys."""

YAML_SECTION = "ib_connector"
"""Top-level key of the YAML section that holds the connector's settings."""

LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]
"""Loguru level names accepted by ``log_level`` (given in any case)."""

_LOG_LEVELS: frozenset[str] = frozenset(get_args(LogLevel))


class MarketDataType(enum.StrEnum):
    """The kind of market data TWS sends (``reqMarketDataType``)."""

    REALTIME = "REALTIME"
    FROZEN = "FROZEN"
    DELAYED = "DELAYED"
    DELAYED_FROZEN = "DELAYED_FROZEN"

    @property
    def code(self) -> int:
        """TWS's number for this type: 1 REALTIME, 2 FROZEN, 3 DELAYED, 4 DELAYED_FROZEN."""
        return _MARKET_DATA_TYPE_CODES[self]


_MARKET_DATA_TYPE_CODES: dict[MarketDataType, int] = {
    MarketDataType.REALTIME: 1,
    MarketDataType.FROZEN: 2,
    MarketDataType.DELAYED: 3,
    MarketDataType.DELAYED_FROZEN: 4,
}


# -- where values came from --------------------------------------------------------
#
# ``from_yaml`` names the file for the YAML source through ``_yaml_path``;
# ``__init__`` records the keyword names in ``_build`` so that an error can say
# whether a bad value was a keyword, an environment variable, the file or a default.


@dataclass
class _Build:
    init_keys: frozenset[str]
    yaml_path: Path | None
    yaml_keys: frozenset[str] = frozenset()


_yaml_path: ContextVar[Path | None] = ContextVar("ibconn_settings_yaml_path", default=None)
_build: ContextVar[_Build | None] = ContextVar("ibconn_settings_build", default=None)
_NESTED_DELIMITER = "__"
"""Separates a section from its key in environment variables: ``IBCONN_RISK__MAX_POSITION``."""


def _section_model(info: FieldInfo | None) -> type[BaseModel] | None:
    """The model of a nested settings section (``risk``), or ``None`` for a plain key."""
    annotation = info.annotation if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _sections(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s nested sections."""
    return frozenset(
        name for name, info in model.model_fields.items() if _section_model(info) is not None
    )


def _env_var_for(key: str) -> str | None:
    """The name of the set environment variable for ``key``, in its own spelling."""
    wanted = f"{ENV_PREFIX}{key}".upper()
    for name in os.environ:
        if name.upper() == wanted:
            return name
    return None


def _origin_of(key: str) -> str:
    """Where the value of ``key`` came from, for the current construction.

    A nested key (``risk.max_order_quantity``) comes from its section's
    keyword or YAML key, or from ``IBCONN_RISK__MAX_ORDER_QUANTITY`` (or the
    whole section as JSON in ``IBCONN_RISK``).
    """
    build = _build.get()
    if build is None:
        return ""
    parts = key.split(".")
    top = parts[0]
    if top in build.init_keys:
        return "keyword argument"
    if key.upper().startswith(ENV_PREFIX):
        return "environment variable"
    env_name = _env_var_for(_NESTED_DELIMITER.join(parts[:2])) or _env_var_for(top)
    if env_name is not None:
        return f"environment variable {env_name}"
    if top in build.yaml_keys and build.yaml_path is not None:
        return f"YAML file {build.yaml_path}"
    return "default"


# -- sources -------------------------------------------------------------------------


class _StrictEnvSource(EnvSettingsSource):
    """``IBCONN_*`` variables; unknown ones are passed on so that validation rejects them."""

    def __call__(self) -> dict[str, Any]:
        try:
            data = super().__call__()
        except SettingsError as exc:  # a mapping or list that is not valid JSON
            raise _env_json_error(exc) from None
        fields = set(self.settings_cls.model_fields)
        sections = _sections(self.settings_cls)
        for name, value in os.environ.items():
            upper = name.upper()
            if not upper.startswith(ENV_PREFIX):
                continue
            key = upper[len(ENV_PREFIX) :].lower()
            head, nested, _ = key.partition(_NESTED_DELIMITER)
            if nested and head in sections:
                continue  # IBCONN_RISK__X: pydantic-settings nests it; the section rejects typos
            if key not in fields:
                data[name] = value
        return data


def _env_json_error(exc: SettingsError) -> ConfigError:
    """Name the environment variable whose mapping or list pydantic-settings could not parse."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field_name = match.group(1) if match else ""
    wanted = f"{ENV_PREFIX}{field_name}".upper()
    names = [name for name in os.environ if name.upper().startswith(wanted)] or [wanted]
    for name in names:
        with contextlib.suppress(ValueError, KeyError):
            json.loads(os.environ[name])
            continue
        names = [name]
        break
    name = names[0]
    value = os.environ.get(name)
    allowed = 'JSON for a mapping or list, e.g. {"AAPL": 100}'
    return ConfigError(
        f"invalid setting: environment variable {name}={value!r} could not be parsed; "
        f"allowed: {allowed}",
        key=name,
        value=value,
        allowed=allowed,
    )


class _YamlSectionSource(PydanticBaseSettingsSource):
    """The ``ib_connector:`` section of the YAML file named by :meth:`from_yaml`."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {} if path is None else read_yaml_section(path)
        build = _build.get()
        if build is not None:
            build.yaml_keys = frozenset(self._data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _file_error(path: Path, problem: str, section: str = YAML_SECTION) -> ConfigError:
    allowed = f"a readable YAML file with a top-level '{section}:' mapping"
    return ConfigError(
        f"config file {path} {problem}; expected {allowed}",
        key="yaml_file",
        value=str(path),
        allowed=allowed,
    )


_HOST_ALLOWED = (
    "an IP address (127.0.0.1, ::1) or a host name of ASCII labels of 1-63 letters, "
    "digits or '-' separated by dots (at most 253 characters)"
)
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def host_problem(host: str) -> str | None:
    """Why ``host`` is neither an IP address nor a valid host name, or ``None``."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if not host.isascii() or len(host) > 253:
        return "not an IP address, and too long or not ASCII for a host name"
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    for label in labels:
        if not _HOST_LABEL.fullmatch(label):
            shown = repr(label) if label else "an empty label"
            return f"not an IP address, and {shown} is not a valid host name label"
    if all(label.isdigit() for label in labels):
        return "looks like an IPv4 address but is not a valid one"
    return None


def _check_path(path: object) -> None:
    """A YAML file path must be a ``str`` or ``os.PathLike`` without NUL characters."""
    allowed = "a file path (str or os.PathLike) without NUL characters"
    if not isinstance(path, str | os.PathLike) or "\0" in os.fspath(path):
        raise ConfigError(
            f"config file path {path!r} is not allowed; allowed: {allowed}",
            key="yaml_file",
            value=path,
            allowed=allowed,
        )


def read_yaml_section(path: str | os.PathLike[str], section: str = YAML_SECTION) -> dict[str, Any]:
    """Read ``path`` and return its ``section`` mapping (``{}`` when the section is empty).

    Raises :class:`~ibconn.errors.ConfigError` when the file is missing or
    unreadable, is not valid YAML, is not a mapping, has no such section, or
    the section is not a mapping of names to values.
    """
    _check_path(path)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _file_error(path, "does not exist", section) from None
    except IsADirectoryError:
        raise _file_error(path, "is a directory, not a file", section) from None
    except PermissionError:
        raise _file_error(path, "cannot be read: permission denied", section) from None
    except UnicodeDecodeError as exc:
        raise _file_error(path, f"is not UTF-8 text ({exc.reason})", section) from None
    except OSError as exc:
        raise _file_error(path, f"cannot be read: {exc.strerror or exc}", section) from None
    try:
        document = yaml.safe_load(text)
    except RecursionError:
        raise _file_error(path, "nests collections too deeply to be read", section) from None
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise _file_error(path, f"is not valid YAML{where}: {problem}", section) from None
    if document is None:
        raise _file_error(path, "is empty", section)
    if not isinstance(document, dict):
        raise _file_error(
            path, f"holds a {type(document).__name__} at the top level, not a mapping", section
        )
    if section not in document:
        present = ", ".join(repr(str(key)) for key in document) or "none"
        close = difflib.get_close_matches(section, [str(key) for key in document], n=1)
        hint = f"; is {close[0]!r} a typo of {section!r}?" if close else ""
        raise ConfigError(
            f"config file {path} has no '{section}:' section (top-level keys: {present}){hint}",
            key=section,
            value=None,
            allowed=f"a top-level '{section}:' mapping of settings",
        )
    data = document[section]
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: section '{section}' must be a mapping of settings, "
            f"not a {type(data).__name__} ({data!r})",
            key=section,
            value=data,
            allowed="a mapping of setting names to values",
        )
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(
                f"config file {path}: setting name {key!r} in section '{section}' is not a string",
                key=str(key),
                value=data[key],
                allowed="setting names as strings",
            )
    return dict(data)


# -- ValidationError -> ConfigError ---------------------------------------------------


def _did_you_mean(word: str, candidates: list[str]) -> str:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def _bounds(metadata: list[Any]) -> tuple[str | None, str | None, object, object]:
    low_op: str | None = None
    high_op: str | None = None
    low: object = None
    high: object = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low_op, low = ">=", item.ge
        elif isinstance(item, annotated_types.Gt):
            low_op, low = ">", item.gt
        elif isinstance(item, annotated_types.Le):
            high_op, high = "<=", item.le
        elif isinstance(item, annotated_types.Lt):
            high_op, high = "<", item.lt
    return low_op, high_op, low, high


def _allowed_text(info: FieldInfo) -> str:
    """Describe what a field accepts, from its type and constraints."""
    return _allowed_for(info.annotation, list(info.metadata))


def _allowed_for(annotation: Any, metadata: list[Any]) -> str:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation) + " (any case)"
    literal_values = get_args(annotation)
    if literal_values and all(isinstance(v, str) for v in literal_values):
        return "one of " + ", ".join(literal_values) + " (any case)"
    if type(None) in literal_values and len(literal_values) == 2:  # X | None: a limit
        inner = next(arg for arg in literal_values if arg is not type(None))
        return f"{_allowed_for(inner, metadata)}, or null (no limit)"
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _allowed_for(inner, [*metadata, *_flat_metadata(extra)])
    if get_origin(annotation) is dict:
        _, value_type = get_args(annotation)
        return f"a mapping of symbol or currency to {_allowed_for(value_type, [])}"
    if get_origin(annotation) is tuple:
        return "a list of symbols, or one comma-separated string"
    if annotation is dt_time:
        return "a time of day as HH:MM"
    if annotation is bool:
        return "true or false"
    if annotation in (int, float):
        finite = any(getattr(item, "allow_inf_nan", True) is False for item in metadata)
        kind = "an integer" if annotation is int else "a finite number" if finite else "a number"
        low_op, high_op, low, high = _bounds(metadata)
        if low_op == ">=" and high_op == "<=":
            return f"{kind} from {low} to {high}"
        parts = [f"{op} {bound}" for op, bound in ((low_op, low), (high_op, high)) if op]
        return f"{kind} {' and '.join(parts)}" if parts else kind
    if annotation is str:
        non_empty = any(isinstance(item, annotated_types.MinLen) for item in metadata)
        return "a non-empty string" if non_empty else "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping of {annotation.__name__} keys"
    return str(annotation)


def _flat_metadata(items: list[Any]) -> list[Any]:
    """``Field(ge=0)`` inside ``Annotated`` as the constraint objects ``_bounds`` reads."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, FieldInfo):
            out.extend(item.metadata)
        else:
            out.append(item)
    return out


def _field_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The field that an error location points at, through nested sections."""
    info: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            break
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = _section_model(info)
    return info


def config_error_from_validation(
    exc: ValidationError,
    model: type[BaseModel],
    *,
    env_prefix: str = ENV_PREFIX,
    origin: Callable[[str], str] | None = None,
) -> ConfigError:
    """Turn pydantic's ``exc`` for ``model`` into one :class:`ConfigError`.

    The message names every bad key with its value, where it came from (when
    ``origin`` can tell) and what is allowed; unknown keys get the closest
    valid key as a suggestion. ``.key``, ``.value`` and ``.allowed`` describe
    the first problem.
    """
    fields: Mapping[str, FieldInfo] = model.model_fields
    names = list(fields)
    problems: list[tuple[str, object, str, str]] = []
    for error in exc.errors():
        loc = error["loc"]
        key = ".".join(str(part) for part in loc) or model.__name__
        value = error.get("input")
        where = origin(key) if origin is not None else ""
        source = f" ({where})" if where else ""
        if error["type"] == "extra_forbidden":
            if env_prefix and key.upper().startswith(env_prefix.upper()):
                prefix = env_prefix.upper()
                allowed = ", ".join(f"{prefix}{name.upper()}" for name in names)
                close = difflib.get_close_matches(key[len(prefix) :].lower(), names, n=1)
                hint = f"; did you mean '{prefix}{close[0].upper()}'?" if close else ""
                line = f"unknown environment variable {key}={value!r}{hint} (valid: {allowed})"
            else:
                section = _section_model(_field_at(model, loc[:-1])) if len(loc) > 1 else None
                if section is not None:  # an unknown key inside a section such as risk:
                    head = ".".join(str(part) for part in loc[:-1])
                    valid = [f"{head}.{name}" for name in section.model_fields]
                else:
                    valid = names
                allowed = ", ".join(valid)
                line = (
                    f"unknown setting {key!r} = {value!r}{source}"
                    f"{_did_you_mean(key.lower(), valid)} (valid: {allowed})"
                )
        else:
            ctx = error.get("ctx") or {}
            field_info = _field_at(model, tuple(loc)) if loc else None
            if "allowed" in ctx:
                allowed = str(ctx["allowed"])
            elif field_info is not None:
                allowed = _allowed_text(field_info)
            else:
                allowed = error["msg"]
            line = f"{key} = {value!r}{source} is not allowed; allowed: {allowed}"
        problems.append((key, value, allowed, line))
    if not problems:  # pragma: no cover - pydantic never raises an empty error
        return ConfigError(str(exc))
    key, value, allowed, line = problems[0]
    if len(problems) == 1:
        message = f"invalid setting: {line}"
    else:
        message = f"{len(problems)} invalid settings: " + "; ".join(p[3] for p in problems)
    return ConfigError(message, key=key, value=value, allowed=allowed)


# -- the settings ---------------------------------------------------------------------


def _positive(default: float, description: str) -> Any:
    return Field(default, gt=0, allow_inf_nan=False, description=description)


# -- risk limits (docs/risk.md) ------------------------------------------------------

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
    exposure_interval: float = _positive(
        1.0, "Seconds between re-evaluations of exposure and daily loss as prices move."
    )

    @field_validator(
        "max_order_quantity",
        "max_order_notional",
        "max_position",
        "max_gross_exposure",
        "max_open_orders",
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
                if _build.get() is not None:
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
        env_nested_delimiter=_NESTED_DELIMITER,  # IBCONN_RISK__MAX_POSITION=...
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
    connect_retry_interval: float = _positive(
        0.25,
        "Seconds before the first retry of the first connect(); doubles with each retry "
        "(capped at reconnect_max_interval), so a first connect fails within seconds.",
    )
    reconnect_interval: float = _positive(
        10.0, "Seconds before the first retry of a reconnect; the base of its backoff."
    )
    reconnect_max_interval: float = _positive(
        300.0, "Cap in seconds of the backoff delay; at least reconnect_interval."
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
        "INFO", description="Default level of enable_logging(): TRACE .. CRITICAL (any case)."
    )
    max_requests_per_second: int = Field(
        50, ge=1, le=50, description="Outgoing API messages per second; TWS allows at most 50."
    )
    connection_timeout: float = _positive(30.0, "Seconds allowed for one connect handshake.")
    market_data_timeout: float = _positive(
        10.0, "Seconds to wait for the first answer to a market data or contract request."
    )
    heartbeat_interval: float = _positive(
        10.0, "Seconds between heartbeat requests (reqCurrentTime) on an idle link."
    )
    heartbeat_timeout: float = _positive(
        5.0, "Seconds a heartbeat may go unanswered before the link counts as dead."
    )
    resync_timeout: float = _positive(
        10.0, "Seconds allowed for the resync of orders, positions and subscriptions."
    )
    degraded_timeout: float = _positive(
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
    order_ack_timeout: float = _positive(
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
    reconcile_interval: float = _positive(
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
    pacing_backlog_alert_after: float = _positive(
        5.0, "Seconds the pacing queue may stay non-empty before a 'pacing' alert."
    )
    historical_identical_window: float = _positive(
        15.0, "Seconds before an identical historical data request may be sent again."
    )
    historical_burst_window: float = _positive(
        2.0, "Window in seconds of the limit of 5 requests per contract, exchange and type."
    )
    historical_window: float = _positive(
        600.0, "Window in seconds of the limit of 60 historical data requests."
    )
    historical_pacing_backoff: float = _positive(
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
    historical_timeout: float = _positive(
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

    if not TYPE_CHECKING:
        # Hidden from mypy so that the pydantic plugin keeps its typed signature.
        def __init__(self, **values: Any) -> None:
            _construct(self, values)

    @field_validator("market_data_type", "log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object, info: ValidationInfo) -> object:
        # Only a recognised name is normalised, so an error still shows the input as given.
        if isinstance(value, str):
            upper = value.strip().upper()
            allowed = set(MarketDataType) if info.field_name == "market_data_type" else _LOG_LEVELS
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
                {"problem": problem, "allowed": _HOST_ALLOWED},
            )
        return value

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
            raise config_error_from_validation(exc, cls, origin=_origin_of) from None

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
            _StrictEnvSource(settings_cls),
            _YamlSectionSource(settings_cls, _yaml_path.get()),
        )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **overrides: Any) -> Self:
        """Load the ``ib_connector:`` section of ``path``.

        ``overrides`` beat ``IBCONN_*`` variables, which beat the file.
        """
        _check_path(path)
        token = _yaml_path.set(Path(path))
        try:
            return cls(**overrides)
        finally:
            _yaml_path.reset(token)

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
    token = _build.set(_Build(frozenset(values), _yaml_path.get()))
    try:
        BaseSettings.__init__(settings, **values)
    except RecursionError:
        raise ConfigError(
            "invalid settings: a value nests collections too deeply to be read",
            key=None,
            allowed="mappings and lists nested at most a few hundred levels",
        ) from None
    finally:
        _build.reset(token)
