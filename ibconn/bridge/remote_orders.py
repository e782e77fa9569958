"""The order commands of :class:`~ibconn.bridge.RemoteConnector`: place, modify, cancel, kill.

Each coroutine checks its arguments here first (the same
:class:`~ibconn.errors.InvalidInputError` a local call raises; a bad quantity never
leaves the process), then sends the command with an idempotency key (default: a
new uuid per call; to retry after a :class:`~ibconn.errors.BridgeTimeoutError`,
pass the same key again). The bridge checks everything again and answers with
the local call's result or error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Unpack

from ibconn.bridge import protocol
from ibconn.bridge.codec import decoder_for
from ibconn.bridge.remote_commands import CommandClient, key_arg, new_key
from ibconn.core.arguments import flag_arg, number_arg, text_arg, timeout_arg
from ibconn.errors import InvalidInputError
from ibconn.orders.enums import OrderAction, OrderType
from ibconn.orders.models import MAX_PRICE, MAX_QUANTITY, OrderSnapshot
from ibconn.orders.spec import OrderChanges, OrderOptions, build_spec
from ibconn.risk.models import KillSwitchState

__all__ = ["RemoteOrderMethods"]

_WIRE_TYPES = {
    OrderType.MARKET: "market",
    OrderType.LIMIT: "limit",
    OrderType.STOP: "stop",
    OrderType.STOP_LIMIT: "stop_limit",
    OrderType.TRAILING_STOP: "trailing_stop",
}


_KILL_SWITCH = decoder_for(KillSwitchState)


def _order_ref(order: object) -> str:
    if isinstance(order, OrderSnapshot):
        return order.order_ref
    if isinstance(order, str) and order.strip():
        return order
    raise InvalidInputError(
        f"order={order!r} is not valid: allowed is an order_ref text or an OrderSnapshot "
        "(a remote has no order ids of the bridge's session)"
    )


def _key(idempotency_key: str | None) -> str:
    return new_key() if idempotency_key is None else key_arg(idempotency_key)


def _snapshot(result: object) -> OrderSnapshot:
    snapshot: OrderSnapshot = protocol.from_wire("order_snapshot", result)
    return snapshot


class RemoteOrderMethods:
    """Placing, changing and cancelling orders through the bridge (mixed into RemoteConnector)."""

    def _command_client(self) -> CommandClient:
        raise NotImplementedError

    async def _place(  # noqa: PLR0917
        self,
        symbol: str,
        quantity: float,
        action: str | OrderAction,
        order_type: OrderType,
        idempotency_key: str | None,
        timeout: float | None,
        options: Mapping[str, object],
        **prices: float | None,
    ) -> OrderSnapshot:
        if not isinstance(symbol, str):
            raise InvalidInputError(
                f"symbol={symbol!r} is not valid: a remote order takes a symbol text "
                "(a Contract cannot travel to the bridge)"
            )
        if "tag" in options:
            raise InvalidInputError(
                "a remote order takes no tag: the bridge derives it from the idempotency key "
                "(so a key never makes a second order)"
            )
        spec = build_spec(symbol, quantity, action, order_type, prices, options)
        key = _key(idempotency_key)
        args: dict[str, object] = {
            "order_type": _WIRE_TYPES[order_type],
            "symbol": symbol,
            "action": spec.action.value,
            "quantity": spec.quantity,
            **{name: value for name, value in prices.items() if value is not None},
            "options": dict(options),
        }
        result = await self._command_client().call(
            "place", args, key=key, timeout=timeout_arg("timeout", timeout)
        )
        return _snapshot(result)

    async def place_market_order(
        self,
        symbol: str,
        quantity: float,
        action: str | OrderAction,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderSnapshot:
        """Buy or sell at the market, through the bridge; the order's state once acknowledged."""
        return await self._place(
            symbol, quantity, action, OrderType.MARKET, idempotency_key, timeout, options
        )

    async def place_limit_order(
        self,
        symbol: str,
        quantity: float,
        action: str | OrderAction,
        limit_price: float,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderSnapshot:
        """A limit order at ``limit_price``, through the bridge."""
        return await self._place(
            symbol, quantity, action, OrderType.LIMIT, idempotency_key, timeout, options,
            limit_price=limit_price,
        )  # fmt: skip

    async def place_stop_order(
        self,
        symbol: str,
        quantity: float,
        action: str | OrderAction,
        stop_price: float,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderSnapshot:
        """A stop order triggered at ``stop_price``, through the bridge."""
        return await self._place(
            symbol, quantity, action, OrderType.STOP, idempotency_key, timeout, options,
            stop_price=stop_price,
        )  # fmt: skip

    async def place_stop_limit_order(
        self,
        symbol: str,
        quantity: float,
        action: str | OrderAction,
        stop_price: float,
        limit_price: float,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderSnapshot:
        """A limit order at ``limit_price`` triggered at ``stop_price``, through the bridge."""
        return await self._place(
            symbol, quantity, action, OrderType.STOP_LIMIT, idempotency_key, timeout, options,
            stop_price=stop_price, limit_price=limit_price,
        )  # fmt: skip

    async def place_trailing_stop_order(
        self,
        symbol: str,
        quantity: float,
        action: str | OrderAction,
        *,
        trailing_amount: float | None = None,
        trailing_percent: float | None = None,
        trail_stop_price: float | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderSnapshot:
        """A stop following the market by ``trailing_amount`` or ``trailing_percent``."""
        return await self._place(
            symbol, quantity, action, OrderType.TRAILING_STOP, idempotency_key, timeout,
            options, trailing_amount=trailing_amount, trailing_percent=trailing_percent,
            trail_stop_price=trail_stop_price,
        )  # fmt: skip

    async def modify_order(
        self,
        order: str | OrderSnapshot,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **changes: Unpack[OrderChanges],
    ) -> OrderSnapshot:
        """Change a working order (by order_ref); only the given fields change."""
        ref = _order_ref(order)
        if not changes:
            raise InvalidInputError("modify_order() needs at least one change")
        _check_changes(changes)
        result = await self._command_client().call(
            "modify",
            {"order_ref": ref, "changes": dict(changes)},
            key=_key(idempotency_key),
            timeout=timeout_arg("timeout", timeout),
        )
        return _snapshot(result)

    async def cancel_order(
        self,
        order: str | OrderSnapshot,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> OrderSnapshot:
        """Cancel an order (by order_ref); its final state."""
        result = await self._command_client().call(
            "cancel",
            {"order_ref": _order_ref(order)},
            key=_key(idempotency_key),
            timeout=timeout_arg("timeout", timeout),
        )
        return _snapshot(result)

    async def cancel_all_orders(
        self, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> list[OrderSnapshot]:
        """Cancel every working order of the bridge's connector; their final states."""
        result = await self._command_client().call(
            "cancel_all", {}, key=_key(idempotency_key), timeout=timeout_arg("timeout", timeout)
        )
        items = result.get("orders", []) if isinstance(result, Mapping) else result
        return [_snapshot(item) for item in items or []]

    async def kill_switch(
        self,
        reason: str,
        *,
        global_cancel: bool | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> KillSwitchState:
        """Engage the bridge's kill switch (see ``IBConnector.kill_switch``); its state."""
        reason = text_arg("reason", reason) or ""
        if not reason:
            raise InvalidInputError("kill_switch() needs a reason (a non-empty text)")
        args: dict[str, object] = {"reason": reason}
        if global_cancel is not None:
            args["global_cancel"] = flag_arg("global_cancel", global_cancel)
        result = await self._command_client().call(
            "kill_switch", args, key=_key(idempotency_key), timeout=timeout_arg("timeout", timeout)
        )
        return _KILL_SWITCH(result)  # type: ignore[no-any-return]

    async def reset_kill_switch(
        self, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> KillSwitchState:
        """Turn the bridge's kill switch off; its state."""
        result = await self._command_client().call(
            "kill_switch",
            {"reset": True},
            key=_key(idempotency_key),
            timeout=timeout_arg("timeout", timeout),
        )
        return _KILL_SWITCH(result)  # type: ignore[no-any-return]


def _check_changes(changes: Mapping[str, object]) -> None:
    """The cheap checks of a modify: known fields, numbers in range."""
    allowed = set(OrderChanges.__annotations__) | {
        "limit_price",
        "stop_price",
        "trailing_amount",
        "trailing_percent",
        "trail_stop_price",
    }
    for name, value in changes.items():
        if name not in allowed:
            raise InvalidInputError(
                f"modify_order() cannot change {name!r}: allowed are {', '.join(sorted(allowed))}"
            )
        if name == "quantity":
            number_arg(name, value, low=0.0, high=MAX_QUANTITY, low_open=True)
        elif name in {"limit_price", "stop_price", "trail_stop_price"}:
            number_arg(name, value, low=-MAX_PRICE, high=MAX_PRICE)
        elif name == "trailing_amount":
            number_arg(name, value, low=0.0, high=MAX_PRICE, low_open=True)
        elif name == "trailing_percent":
            number_arg(name, value, low=0.0, high=100.0, low_open=True)
