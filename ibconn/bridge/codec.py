"""Records as plain JSON: the typed codec behind ``protocol.to_wire`` / ``from_wire``.

A record (a frozen dataclass, a named tuple or a pydantic model of ibconn) becomes a
JSON object with one member per field, each converted by the field's annotation:

* ``str``, ``int``, ``bool`` as themselves; ``float`` as a JSON number, except NaN and
  the infinities, which are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
  (the JSON stays strict); an ``int`` read into a ``float`` field becomes a float;
* ``datetime`` as ISO 8601 text (``isoformat()``: exact, with its offset);
* an enumeration as its value;
* a nested record as an object, ``tuple[X, ...]`` as an array, ``Mapping[str, str]``
  as an object;
* an ib_async ``Contract`` as an object of its fields that differ from the default
  (``comboLegs`` and ``deltaNeutralContract`` nested the same way), read back with
  ``Contract.create`` (the class follows ``secType``);
* ``X | None`` as ``null`` or ``X``; ``str | Contract`` by the JSON type.

Reading is strict about types (a wrong type raises :class:`CodecError`), tolerant
about members: an unknown member is ignored (a newer writer of the same schema
version may add fields) and a missing one takes the field's default (an error when it
has none). Converters are built once per class and cached.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Union

from ib_async import ComboLeg, Contract, DeltaNeutralContract
from pydantic import BaseModel, ValidationError

__all__ = ["CodecError", "decoder_for", "encoder_for"]

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]

_MISSING = object()


class CodecError(ValueError):
    """A value could not be converted (a type the codec does not know, or bad JSON data)."""


# -- floats ---------------------------------------------------------------------------------

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode_float(value: Any) -> Any:
    if value is None:
        return None
    number = float(value)
    if math.isfinite(number):
        return number
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _decode_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CodecError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    raise CodecError(f"expected a number, got {value!r}")


def _decode_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecError(f"expected an integer, got {value!r}")
    return value


def _decode_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise CodecError(f"expected true or false, got {value!r}")
    return value


def _decode_str(value: Any) -> str:
    if not isinstance(value, str):
        raise CodecError(f"expected text, got {value!r}")
    return value


def _identity(value: Any) -> Any:
    return value


def _encode_datetime(value: datetime) -> str:
    return value.isoformat()


def _decode_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise CodecError(f"expected an ISO 8601 time, got {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise CodecError(f"expected an ISO 8601 time, got {value!r}") from exc


# -- ib_async contracts ---------------------------------------------------------------------


def _non_defaults(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in dataclasses.fields(obj):
        value = getattr(obj, item.name)
        if item.default is not dataclasses.MISSING:
            default: Any = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:  # pragma: no cover - ib_async's contracts give every field a default
            default = _MISSING
        if value != default or type(value) is not type(default):
            out[item.name] = value
    return out


def _encode_contract(contract: Contract) -> dict[str, Any]:
    data = _non_defaults(contract)
    if "comboLegs" in data:
        data["comboLegs"] = [_non_defaults(leg) for leg in contract.comboLegs]
    if contract.deltaNeutralContract is not None:
        data["deltaNeutralContract"] = _non_defaults(contract.deltaNeutralContract)
    for key, value in data.items():
        if isinstance(value, float):
            data[key] = _encode_float(value)
    return data


_CONTRACT_FIELDS = {item.name: item.type for item in dataclasses.fields(Contract)}


def _decode_contract(value: Any) -> Contract:
    if not isinstance(value, dict):
        raise CodecError(f"expected a contract object, got {value!r}")
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _CONTRACT_FIELDS:
            continue
        if key == "comboLegs":
            if not isinstance(item, list):
                raise CodecError(f"expected a list of combo legs, got {item!r}")
            kwargs[key] = [_plain_dataclass(ComboLeg, leg) for leg in item]
        elif key == "deltaNeutralContract":
            kwargs[key] = None if item is None else _plain_dataclass(DeltaNeutralContract, item)
        elif key == "strike":
            kwargs[key] = _decode_float(item)
        else:
            kwargs[key] = item
    try:
        return Contract.create(**kwargs)
    except TypeError as exc:
        raise CodecError(f"not a contract: {exc}") from exc


def _plain_dataclass(cls: type[Any], value: Any) -> Any:
    if not isinstance(value, dict):
        raise CodecError(f"expected an object for {cls.__name__}, got {value!r}")
    names = {item.name for item in dataclasses.fields(cls)}
    kwargs = {
        key: _decode_float(item) if isinstance(item, str) and item in _NON_FINITE else item
        for key, item in value.items()
        if key in names
    }
    return cls(**kwargs)


# -- annotations ------------------------------------------------------------------------------


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _converters(tp: Any) -> tuple[Encoder, Decoder]:
    """The encoder and decoder of one annotation."""
    if tp is type(None):
        return _identity, _expect_none
    if _is_union(tp):
        return _union_converters(tp)
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise CodecError(f"unsupported tuple annotation {tp!r}")
        encode_item, decode_item = _converters(args[0])
        return (
            lambda value: [encode_item(item) for item in value],
            lambda value: tuple(decode_item(item) for item in _expect_list(value)),
        )
    if origin is not None and origin in (Mapping, dict):
        return dict, _decode_str_mapping
    if tp is float:
        return _encode_float, _decode_float
    if tp is bool:
        return _identity, _decode_bool
    if tp is int:
        return _identity, _decode_int
    if tp is str:
        return _identity, _decode_str
    if tp is datetime:
        return _encode_datetime, _decode_datetime
    if isinstance(tp, type) and issubclass(tp, Contract):
        return _encode_contract, _decode_contract
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_converters(tp)
    if isinstance(tp, type) and (
        dataclasses.is_dataclass(tp) or _is_named_tuple(tp) or issubclass(tp, BaseModel)
    ):
        return encoder_for(tp), decoder_for(tp)
    raise CodecError(f"unsupported annotation {tp!r}")


def _expect_none(value: Any) -> None:
    if value is not None:
        raise CodecError(f"expected null, got {value!r}")


def _expect_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise CodecError(f"expected an array, got {value!r}")
    return value


def _decode_str_mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise CodecError(f"expected an object of texts, got {value!r}")
    return dict(value)


def _enum_converters(cls: type[enum.Enum]) -> tuple[Encoder, Decoder]:
    def decode(value: Any) -> enum.Enum:
        try:
            return cls(value)
        except ValueError as exc:
            allowed = ", ".join(repr(member.value) for member in cls)
            raise CodecError(f"{value!r} is not a {cls.__name__} (one of {allowed})") from exc

    return (lambda value: value.value), decode


def _union_converters(tp: Any) -> tuple[Encoder, Decoder]:
    members = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    optional = len(members) != len(typing.get_args(tp))
    if len(members) == 1:
        encode_one, decode_one = _converters(members[0])
        if not optional:  # pragma: no cover - a one-member union is not a union
            return encode_one, decode_one
        return (
            lambda value: None if value is None else encode_one(value),
            lambda value: None if value is None else decode_one(value),
        )
    if set(members) == {str, Contract}:

        def encode(value: Any) -> Any:
            if value is None or isinstance(value, str):
                return value
            return _encode_contract(value)

        def decode(value: Any) -> Any:
            if value is None and optional:
                return None
            if isinstance(value, str):
                return value
            return _decode_contract(value)

        return encode, decode
    raise CodecError(f"unsupported union {tp!r}")


def _is_named_tuple(tp: type[Any]) -> bool:
    return issubclass(tp, tuple) and hasattr(tp, "_fields")


# -- records ----------------------------------------------------------------------------------

_FieldPlan = tuple[str, Encoder, Decoder, Any]  # name, encode, decode, default or _MISSING

_PLANS: dict[type[Any], tuple[_FieldPlan, ...]] = {}
_ENCODERS: dict[type[Any], Encoder] = {}
_DECODERS: dict[type[Any], Decoder] = {}


def _plan(cls: type[Any]) -> tuple[_FieldPlan, ...]:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    fields: list[_FieldPlan] = []
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        for name, info in cls.model_fields.items():
            default = (
                _MISSING if info.is_required() else info.get_default(call_default_factory=True)
            )
            encode, decode = _converters(info.annotation)
            fields.append((name, encode, decode, default))
    elif dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            default = item.default
            if item.default_factory is not dataclasses.MISSING:
                default = item.default_factory
            if default is dataclasses.MISSING:
                default = _MISSING
            encode, decode = _converters(hints[item.name])
            fields.append((item.name, encode, decode, default))
    elif _is_named_tuple(cls):
        hints = typing.get_type_hints(cls)
        defaults: dict[str, Any] = cls._field_defaults
        for name in cls._fields:
            encode, decode = _converters(hints[name])
            fields.append((name, encode, decode, defaults.get(name, _MISSING)))
    else:
        raise CodecError(f"{cls!r} is not a record the codec knows")
    plan = tuple(fields)
    _PLANS[cls] = plan
    return plan


def encoder_for(cls: type[Any]) -> Encoder:
    """The function that turns a record of ``cls`` into a JSON-ready ``dict``."""
    encoder = _ENCODERS.get(cls)
    if encoder is not None:
        return encoder
    plan = [(name, encode) for name, encode, _, _ in _plan(cls)]

    def encode_record(record: Any) -> dict[str, Any]:
        return {name: encode(getattr(record, name)) for name, encode in plan}

    _ENCODERS[cls] = encode_record
    return encode_record


def decoder_for(cls: type[Any]) -> Decoder:
    """The function that turns a JSON ``dict`` back into a record of ``cls``."""
    decoder = _DECODERS.get(cls)
    if decoder is not None:
        return decoder
    plan = _plan(cls)
    name_of = cls.__name__

    def decode_record(data: Any) -> Any:
        if not isinstance(data, dict):
            raise CodecError(f"expected an object for {name_of}, got {data!r}")
        kwargs: dict[str, Any] = {}
        for name, _, decode, default in plan:
            value = data.get(name, _MISSING)
            if value is _MISSING:
                if default is _MISSING:
                    raise CodecError(f"{name_of} needs {name!r}")
                continue
            try:
                kwargs[name] = decode(value)
            except CodecError as exc:
                raise CodecError(f"{name_of}.{name}: {exc}") from exc
        try:
            return cls(**kwargs)
        except (TypeError, ValueError, ValidationError) as exc:
            raise CodecError(f"not a valid {name_of}: {exc}") from exc

    _DECODERS[cls] = decode_record
    return decode_record
