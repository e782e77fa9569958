"""A remote's commands to the bridge: request/reply with an idempotency key, errors mapped back.

:class:`CommandClient` sends a :class:`~ibconn.bridge.protocol.CommandRequest` on
``<prefix>.cmd.<name>`` and turns the reply into its result, or raises the
:mod:`ibconn.errors` exception the bridge named (the same class and attributes a
local call raises, :func:`~ibconn.bridge.protocol.error_from_wire`). No reply in
time is a :class:`~ibconn.errors.BridgeTimeoutError` carrying the key; no bridge
listening is a :class:`~ibconn.errors.NotConnectedError`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

from ibconn.bridge import protocol
from ibconn.errors import BridgeTimeoutError, InvalidInputError, NotConnectedError

__all__ = ["CommandClient", "NoBridge", "key_arg", "new_key", "plain"]

Requester = Callable[[str, bytes, float], Awaitable[bytes]]
"""Send a request on a subject and return the reply's payload (nats: ``nc.request``)."""


def new_key() -> str:
    """A fresh idempotency key (32 hex digits)."""
    return uuid.uuid4().hex


def key_arg(key: object) -> str:
    """An idempotency key as given, checked (1-64 of letters, digits, ``_=.-``)."""
    return protocol.check_command_key(key)


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


class NoBridge(Exception):
    """The request found no responder (raised by the requester the client is given)."""


class CommandClient:
    """Send commands to the bridge and map its replies (see the module)."""

    def __init__(self, request: Requester, prefix: str, timeout: float) -> None:
        self._request = request
        self._prefix = prefix
        self._names = protocol.Names(prefix)
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
        if name in protocol.KEYED_COMMANDS:
            key = key_arg(key)
        wire_args: Any = plain(args)
        request = protocol.CommandRequest(key=key, args=wire_args)
        wait = self.timeout if timeout is None else timeout
        subject = self._names.command(name)
        self.sent += 1
        try:
            raw = await self._request(subject, request.encode(), wait)
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
        return protocol.CommandReply.decode(raw).unwrap()
