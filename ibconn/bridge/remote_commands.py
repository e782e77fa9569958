"""A remote's commands to the bridge: request/reply with an idempotency key, errors mapped back.

:class:`CommandClient` sends ``{"v": 1, "key": ..., "args": ...}`` on
``<prefix>.cmd.<name>`` and turns the reply into its result, or into the
:mod:`ibconn.errors` exception the bridge named (the same class and attributes a
local call raises). No reply in time is a
:class:`~ibconn.errors.BridgeTimeoutError` carrying the key; no bridge listening
is a :class:`~ibconn.errors.NotConnectedError`.
"""

from __future__ import annotations

import inspect
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

from ibconn import errors
from ibconn.errors import BridgeTimeoutError, IBConnError, InvalidInputError, NotConnectedError

__all__ = ["CommandClient", "error_from_reply", "new_key"]

Requester = Callable[[str, bytes, float], Awaitable[bytes]]
"""Send a request on a subject and return the reply's payload (nats: ``nc.request``)."""

UNKEYED = frozenset({"subscribe"})


def new_key() -> str:
    """A fresh idempotency key."""
    return uuid.uuid4().hex


def key_arg(key: object) -> str:
    """An idempotency key as given, checked: a non-empty text of at most 200 characters."""
    if not isinstance(key, str) or not key or len(key) > 200 or not key.isprintable():
        raise InvalidInputError(
            f"idempotency_key={key!r} is not valid: allowed is a non-empty printable "
            "text of at most 200 characters (default: a new uuid per call)"
        )
    return key


def plain(value: object) -> object:
    """``value`` as plain JSON: enums by value, datetimes in ISO 8601, mappings and lists."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{value!r} is not a finite number")
    return value


class CommandClient:
    """Send commands to the bridge and map its replies (see the module)."""

    def __init__(self, request: Requester, prefix: str, timeout: float) -> None:
        self._request = request
        self._prefix = prefix
        self.timeout = timeout
        self.sent = 0

    async def call(
        self,
        name: str,
        args: Mapping[str, object],
        *,
        key: str | None,
        timeout: float | None = None,
    ) -> Any:
        """Run command ``name`` on the bridge; its result, or the error it raised."""
        body: dict[str, object] = {"v": 1, "args": plain(args)}
        if name not in UNKEYED:
            body["key"] = key_arg(key)
        wait = self.timeout if timeout is None else timeout
        payload = json.dumps(body, separators=(",", ":")).encode()
        subject = f"{self._prefix}.cmd.{name}"
        self.sent += 1
        try:
            raw = await self._request(subject, payload, wait)
        except TimeoutError:
            raise BridgeTimeoutError(
                f"the bridge did not answer {name!r} within {wait:g} s: it may or may not "
                f"have run (an order may exist). Retrying with the same idempotency key "
                f"({key!r}) is safe: the bridge runs a key once.",
                command=name,
                key=key,
            ) from None
        except NoBridge as exc:
            raise NotConnectedError(
                f"no bridge answers on {subject!r} (is `ibconn bridge` running with "
                f"subject prefix {self._prefix!r}?): {exc}"
            ) from None
        return parse_reply(name, raw)


class NoBridge(Exception):  # noqa: N818 - raised by a requester, mapped to NotConnectedError
    """The request found no responder (raised by the requester the client is given)."""


def parse_reply(name: str, raw: bytes) -> Any:
    """The result of a reply, or raise the error it carries."""
    try:
        reply = json.loads(raw)
    except ValueError as exc:
        raise IBConnError(f"the bridge's reply to {name!r} is not JSON: {exc}") from None
    if not isinstance(reply, dict) or reply.get("v") != 1:
        raise IBConnError(f"the bridge's reply to {name!r} has an unknown form: {raw[:200]!r}")
    if reply.get("ok") is True:
        return reply.get("result")
    raise error_from_reply(reply.get("error"))


def error_from_reply(error: object) -> IBConnError:
    """The :mod:`ibconn.errors` exception a reply's ``error`` describes.

    The class is looked up by name among ibconn's errors (an unknown name gives
    :class:`~ibconn.errors.IBConnError`); its keyword attributes come from
    ``details``, and the ones the reply lacks take the constructor's default (or
    ``None``).
    """
    if not isinstance(error, Mapping):
        return IBConnError(f"the bridge refused the command without saying why: {error!r}")
    type_name = str(error.get("type", ""))
    message = str(error.get("message", ""))
    details = error.get("details")
    details = details if isinstance(details, Mapping) else {}
    cls = getattr(errors, type_name, None) if type_name in errors.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, IBConnError)):
        err = IBConnError(f"{type_name or 'error'}: {message}")
        err.details = dict(details)  # type: ignore[attr-defined]
        return err
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        value = details.get(param.name, default)
        if isinstance(value, list):
            value = tuple(value) if param.name == "results" else value
        setattr(exc, param.name, value)
    return exc
