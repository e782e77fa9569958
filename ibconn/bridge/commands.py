"""The bridge's commands: ``P.cmd.<name>`` requests run through the connector's own methods.

``place``, ``modify``, ``cancel``, ``cancel_all`` and ``kill_switch`` call the same
``IBConnector`` methods a local program calls, so they pass the same validation, risk
checks (read-only mode included) and pacer, and fail with the same typed errors, sent
back by class name (:func:`~ibconn.bridge.protocol.error_to_wire`). ``subscribe`` adds
symbols to the published market data.

**Idempotency.** Every command but ``subscribe`` carries a key. A second request with
a key still in flight joins the first and gets its reply. A finished reply is kept in
the KV bucket ``PFX_COMMANDS`` for ``bridge.command_dedupe_window`` and sent again for
the same key. A key reused for another command or other arguments is refused. A reply whose error is
retriable (not connected, a message that never left, a lost link) is not kept: nothing
happened, and the same key may be sent again. A
``place`` derives its order's tag (and so its order ref, ``<run>-<n>/<tag>``) from the
key; the bridge records the key as pending in the bucket before it sends, so a bridge
restarted while the key was pending looks for the order by that tag among the orders
the connector knows (working orders, adopted from TWS at connect) and the day's
executions (an order that filled) and answers with it instead of placing a second one.
An order that ended unfilled before the restart is not found that way: the key is then
placed again.

Arguments (JSON objects):

* ``place``: ``order_type`` (``market``, ``limit``, ``stop``, ``stop_limit``,
  ``trailing_stop``), ``symbol``, ``action``, ``quantity``, the prices the type needs
  (``limit_price``, ``stop_price``; ``trailing_amount`` / ``trailing_percent`` /
  ``trail_stop_price``), ``options`` (the keywords of ``OrderOptions`` but ``tag``;
  ``good_till`` as ISO 8601 text) and ``ack_timeout`` -> an ``order_snapshot``;
* ``modify``: ``order_ref`` (or ``order``) and ``changes`` (``OrderChanges``) -> an
  ``order_snapshot``;
* ``cancel``: ``order_ref`` (or ``order``) -> an ``order_snapshot``;
* ``cancel_all``: nothing -> ``{"orders": [order_snapshot, ...]}``;
* ``kill_switch``: ``reason`` and ``global_cancel`` (optional), or ``reset: true`` ->
  the switch's state (``engaged``, ``reason``, ``since``, ...);
* ``subscribe``: ``symbols`` (or one ``symbol``) -> ``{"symbols": [every symbol
  published]}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, Final

from ibconn.bridge.codec import encoder_for
from ibconn.bridge.protocol import (
    BadMessageError,
    CommandReply,
    CommandRequest,
    check_command_key,
    to_wire,
)
from ibconn.connector import IBConnector
from ibconn.errors import IBConnError, InvalidInputError
from ibconn.orders.models import OrderSnapshot, OrderStatus
from ibconn.risk.models import KillSwitchState

__all__ = ["ORDER_TYPES", "CommandHandler", "tag_for_key"]

ORDER_TYPES: Final = {
    "market": ("place_market_order", (), ()),
    "limit": ("place_limit_order", ("limit_price",), ()),
    "stop": ("place_stop_order", ("stop_price",), ()),
    "stop_limit": ("place_stop_limit_order", ("stop_price", "limit_price"), ()),
    "trailing_stop": (
        "place_trailing_stop_order",
        (),
        ("trailing_amount", "trailing_percent", "trail_stop_price"),
    ),
}
"""``order_type`` -> (connector method, required price arguments, optional ones)."""

_PLACE_KEYS = frozenset({"order_type", "symbol", "action", "quantity", "options", "ack_timeout"})
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "modify": frozenset({"order_ref", "changes", "ack_timeout"}),
    "cancel": frozenset({"order_ref", "timeout"}),
    "cancel_all": frozenset({"timeout"}),
    "kill_switch": frozenset({"reason", "global_cancel", "reset", "timeout"}),
    "subscribe": frozenset({"symbols"}),
}
_PENDING = "pending"
_DONE = "done"


def tag_for_key(key: str) -> str:
    """The order tag of a remote ``place`` with idempotency key ``key`` (25 characters)."""
    return "k" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _fingerprint(command: str, args: dict[str, Any]) -> str:
    text = json.dumps([command, args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _refuse(message: str) -> InvalidInputError:
    return InvalidInputError(message)


def _check_keys(command: str, args: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise _refuse(
            f"{command}: unknown argument(s) {', '.join(unknown)}; allowed: "
            + ", ".join(sorted(allowed))
        )


def _text(command: str, args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise _refuse(f"{command}: {name} must be non-empty text, got {value!r}")
    return value


def _timeout(command: str, args: dict[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise _refuse(f"{command}: {name} must be seconds from 0 to 3600, got {value!r}")
    return float(value)


def _options(command: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _refuse(f"{command}: options must be a JSON object, got {value!r}")
    if "tag" in value:
        raise _refuse(
            f"{command}: options.tag is not allowed on a remote order: the bridge sets the tag "
            "from the idempotency key"
        )
    options = dict(value)
    good_till = options.get("good_till")
    if isinstance(good_till, str):
        try:
            options["good_till"] = datetime.fromisoformat(good_till)
        except ValueError as exc:
            raise _refuse(f"{command}: options.good_till must be ISO 8601 text: {exc}") from exc
    return options


_ALIASES: Final[dict[str, tuple[str, str]]] = {
    "modify": ("order", "order_ref"),
    "cancel": ("order", "order_ref"),
    "subscribe": ("symbol", "symbols"),
}


def _canonical(command: str, args: dict[str, Any]) -> dict[str, Any]:
    """Accept the short spellings ``order`` (for ``order_ref``) and ``symbol`` (one symbol)."""
    alias = _ALIASES.get(command)
    if alias is None or alias[0] not in args or alias[1] in args:
        return args
    short, name = alias
    out = {k: v for k, v in args.items() if k != short}
    out[name] = [args[short]] if name == "symbols" else args[short]
    return out


def _retriable_failure(reply: bytes) -> bool:
    decoded = CommandReply.decode(reply)
    return not decoded.ok and bool((decoded.error or {}).get("retriable"))


class CommandHandler:
    """Runs one command request and makes its reply; one per bridge."""

    def __init__(
        self,
        connector: IBConnector,
        kv: Any,
        *,
        subscribe: Callable[[list[str]], Awaitable[list[str]]],
    ) -> None:
        self._connector = connector
        self.kv = kv
        self._subscribe = subscribe
        self._in_flight: dict[str, asyncio.Future[bytes]] = {}
        self.handled = 0
        self.joined = 0
        self.replayed = 0

    async def handle(self, command: str, raw: bytes) -> bytes:
        """The reply body to the request ``raw`` of ``command`` (never raises)."""
        self.handled += 1
        try:
            request = CommandRequest.decode(raw, command)
        except (BadMessageError, InvalidInputError) as exc:
            return CommandReply.failure(exc).encode()
        if request.key is None:
            return await self._run(command, request.args)
        key = check_command_key(request.key)
        first = self._in_flight.get(key)
        if first is not None:
            self.joined += 1
            return await asyncio.shield(first)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            reply = await self._keyed(command, key, request.args)
            future.set_result(reply)
            return reply
        except BaseException as exc:
            reply = CommandReply.failure(exc).encode()
            future.set_result(reply)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return reply
        finally:
            del self._in_flight[key]

    async def _keyed(self, command: str, key: str, args: dict[str, Any]) -> bytes:
        fingerprint = _fingerprint(command, args)
        stored = await self._stored(key)
        if stored is not None:
            if stored.get("fingerprint") != fingerprint:
                return CommandReply.failure(
                    _refuse(
                        f"idempotency key {key!r} was used for another command or other "
                        f"arguments ({stored.get('command')}); use a new key"
                    )
                ).encode()
            if stored.get("state") == _DONE and isinstance(stored.get("reply"), dict):
                self.replayed += 1
                return json.dumps(stored["reply"], separators=(",", ":")).encode()
            if command == "place":  # pending: a bridge stopped while it placed this order
                known = self._order_with_tag(tag_for_key(key))
                if known is not None:
                    reply = CommandReply.success(to_wire(known)).encode()
                    await self._store(key, command, fingerprint, _DONE, reply)
                    return reply
        await self._store(key, command, fingerprint, _PENDING, None)
        reply = await self._run(command, args, key=key)
        if _retriable_failure(reply):  # nothing happened: the same key may try again
            await self.kv.delete(key)
        else:
            await self._store(key, command, fingerprint, _DONE, reply)
        return reply

    def _order_with_tag(self, tag: str) -> OrderSnapshot | None:
        """The order a remote place with this tag made, if the connector knows it.

        A working order is among ``orders()`` (adopted from TWS's open orders); one that
        filled and ended before the restart is known by its executions only, and is
        rebuilt from them (quantity = filled, status FILLED).
        """
        suffix = "/" + tag
        for order in self._connector.orders():
            if order.order_ref.endswith(suffix):
                return order
        fills = tuple(
            fill
            for fill in self._connector.executions()
            if fill.order_ref is not None and fill.order_ref.endswith(suffix)
        )
        if not fills:
            return None
        first = fills[0]
        filled = sum(fill.quantity for fill in fills)
        average = sum(fill.quantity * fill.price for fill in fills) / filled if filled else None
        return OrderSnapshot(
            order_ref=first.order_ref or "",
            order_id=first.order_id,
            perm_id=first.perm_id,
            symbol=first.symbol,
            action=first.action,
            order_type="",
            quantity=filled,
            status=OrderStatus.FILLED,
            filled=filled,
            remaining=0.0,
            avg_fill_price=average,
            last_fill_price=fills[-1].price,
            commission=None,
            fills=fills,
            last_error=None,
            tag=tag,
            adopted=True,
            updated_at=fills[-1].time,
            con_id=first.con_id,
            account=first.account,
        )

    async def _stored(self, key: str) -> dict[str, Any] | None:
        try:
            entry = await self.kv.get(key)
        except Exception:
            return None
        try:
            value = json.loads(entry.value or b"")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def _store(
        self, key: str, command: str, fingerprint: str, state: str, reply: bytes | None
    ) -> None:
        value = {
            "command": command,
            "fingerprint": fingerprint,
            "state": state,
            "reply": None if reply is None else json.loads(reply),
        }
        await self.kv.put(key, json.dumps(value, separators=(",", ":")).encode())

    async def _run(self, command: str, args: dict[str, Any], *, key: str | None = None) -> bytes:
        try:
            result = await self._dispatch(command, args, key)
        except IBConnError as exc:
            return CommandReply.failure(exc).encode()
        return CommandReply.success(result).encode()

    def _dispatch(
        self, command: str, args: dict[str, Any], key: str | None
    ) -> Coroutine[Any, Any, Any]:
        if command == "place":
            return self._place(args, key or "")
        if command not in _ALLOWED:
            raise _refuse(f"unknown command {command!r}")
        args = _canonical(command, args)
        _check_keys(command, args, _ALLOWED[command])
        match command:
            case "modify":
                return self._modify(args)
            case "cancel":
                return self._cancel(args)
            case "cancel_all":
                return self._cancel_all(args)
            case "kill_switch":
                return self._kill_switch(args)
        return self._subscribe_symbols(args)

    async def _place(self, args: dict[str, Any], key: str) -> Any:
        order_type = args.get("order_type")
        if order_type not in ORDER_TYPES:
            raise _refuse(
                f"place: order_type {order_type!r} is not allowed; allowed: "
                + ", ".join(ORDER_TYPES)
            )
        method, required, optional = ORDER_TYPES[order_type]
        _check_keys("place", args, _PLACE_KEYS | set(required) | set(optional))
        for name in ("symbol", "action"):
            _text("place", args, name)
        if "quantity" not in args:
            raise _refuse("place: quantity is required")
        missing = [name for name in required if name not in args]
        if missing:
            raise _refuse(f"place: a {order_type} order needs {', '.join(missing)}")
        options = _options("place", args.get("options"))
        options["tag"] = tag_for_key(key)
        prices = {name: args[name] for name in (*required, *optional) if name in args}
        place = getattr(self._connector, method)
        handle = await place(
            args["symbol"],
            args["quantity"],
            args["action"],
            **prices,
            ack_timeout=_timeout("place", args, "ack_timeout"),
            **options,
        )
        return to_wire(self._connector.get_order_status(handle))

    async def _modify(self, args: dict[str, Any]) -> Any:
        changes = args.get("changes", {})
        if not isinstance(changes, dict):
            raise _refuse(f"modify: changes must be a JSON object, got {changes!r}")
        handle = await self._connector.modify_order(
            _text("modify", args, "order_ref"),
            ack_timeout=_timeout("modify", args, "ack_timeout"),
            **changes,
        )
        return to_wire(self._connector.get_order_status(handle))

    async def _cancel(self, args: dict[str, Any]) -> Any:
        snapshot = await self._connector.cancel_order(
            _text("cancel", args, "order_ref"), timeout=_timeout("cancel", args, "timeout")
        )
        return to_wire(snapshot)

    async def _cancel_all(self, args: dict[str, Any]) -> Any:
        done = await self._connector.cancel_all_orders(
            timeout=_timeout("cancel_all", args, "timeout")
        )
        return {"orders": [to_wire(snapshot) for snapshot in done]}

    async def _kill_switch(self, args: dict[str, Any]) -> Any:
        if args.get("reset") is True:
            state = self._connector.reset_kill_switch()
        else:
            global_cancel = args.get("global_cancel")
            if global_cancel is not None and not isinstance(global_cancel, bool):
                raise _refuse("kill_switch: global_cancel must be true, false or null")
            state = await self._connector.kill_switch(
                _text("kill_switch", args, "reason"),
                global_cancel=global_cancel,
                timeout=_timeout("kill_switch", args, "timeout"),
            )
        return encoder_for(KillSwitchState)(state)

    async def _subscribe_symbols(self, args: dict[str, Any]) -> Any:
        symbols = args.get("symbols")
        if (
            not isinstance(symbols, list)
            or not symbols
            or not all(isinstance(s, str) and s.strip() for s in symbols)
        ):
            raise _refuse(f"subscribe: symbols must be a list of non-empty texts, got {symbols!r}")
        return {"symbols": await self._subscribe([s.strip() for s in symbols])}
