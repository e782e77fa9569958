"""The order methods of :class:`~ibconn.IBConnector` (a mixin over :class:`OrderService`).

Each ``place_*`` helper builds an :class:`~ibconn.orders.models.OrderSpec` and
calls :meth:`OrderMethods.place_order`; all of them return an
:class:`~ibconn.orders.service.OrderHandle` once TWS has acknowledged the order.
Every call that takes an order accepts the handle, its ``order_ref`` or its
order id of the current session.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Unpack

from ibconn.contracts.resolver import ContractLike
from ibconn.core.arguments import capacity_arg, timeout_arg
from ibconn.core.streams import Subscription
from ibconn.orders.enums import OrderAction, OrderStatus, OrderType
from ibconn.orders.models import Fill, OrderSnapshot, OrderUpdate
from ibconn.orders.placing import BracketOrder
from ibconn.orders.records import OrderHandle, OrderLike
from ibconn.orders.service import OrderService
from ibconn.orders.spec import OrderChanges, OrderOptions, OrderSpec, build_spec

__all__ = ["OrderMethods"]


class OrderMethods:
    """Placing, changing, cancelling and following orders (mixed into IBConnector).

    Common keywords of the ``place_*`` helpers: the order options of
    :class:`~ibconn.orders.spec.OrderOptions` (``tif``: DAY, GTC, IOC, FOK, GTD
    with ``good_till``, OPG; ``account``; ``outside_rth``; ``tag``, a short label
    kept with the order and in its order_ref; ``oca_group`` / ``oca_type``;
    ``round_prices``, round to the valid increment instead of refusing), plus
    ``wait_timeout`` (wait that long for a connection instead of raising
    NotConnectedError at once) and ``ack_timeout`` (default
    ``settings.order_ack_timeout``).
    """

    _orders: OrderService

    @property
    def order_service(self) -> OrderService:
        """The order service (registry, statistics)."""
        return self._orders

    async def place_order(
        self,
        spec: OrderSpec,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
    ) -> OrderHandle:
        """Place any order described by an :class:`OrderSpec` (see OrderService.place_order)."""
        return await self._orders.place_order(
            spec,
            wait_timeout=timeout_arg("wait_timeout", wait_timeout),
            ack_timeout=timeout_arg("ack_timeout", ack_timeout),
        )

    async def _place(  # noqa: PLR0917
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        order_type: OrderType,
        wait_timeout: float | None,
        ack_timeout: float | None,
        options: OrderOptions,
        **prices: float | None,
    ) -> OrderHandle:
        wait_timeout = timeout_arg("wait_timeout", wait_timeout)
        ack_timeout = timeout_arg("ack_timeout", ack_timeout)
        spec = build_spec(symbol, quantity, action, order_type, prices, options)
        return await self._orders.place_order(
            spec, wait_timeout=wait_timeout, ack_timeout=ack_timeout
        )

    async def place_market_order(
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderHandle:
        """Buy or sell at the market."""
        return await self._place(
            symbol, quantity, action, OrderType.MARKET, wait_timeout, ack_timeout, options
        )

    async def place_limit_order(
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        limit_price: float,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderHandle:
        """Buy at ``limit_price`` or lower / sell at ``limit_price`` or higher."""
        return await self._place(
            symbol, quantity, action, OrderType.LIMIT, wait_timeout, ack_timeout, options,
            limit_price=limit_price,
        )  # fmt: skip

    async def place_stop_order(
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        stop_price: float,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderHandle:
        """A market order triggered when the price reaches ``stop_price``."""
        return await self._place(
            symbol, quantity, action, OrderType.STOP, wait_timeout, ack_timeout, options,
            stop_price=stop_price,
        )  # fmt: skip

    async def place_stop_limit_order(
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        stop_price: float,
        limit_price: float,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderHandle:
        """A limit order at ``limit_price`` triggered when the price reaches ``stop_price``."""
        return await self._place(
            symbol, quantity, action, OrderType.STOP_LIMIT, wait_timeout, ack_timeout, options,
            stop_price=stop_price, limit_price=limit_price,
        )  # fmt: skip

    async def place_trailing_stop_order(
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        *,
        trailing_amount: float | None = None,
        trailing_percent: float | None = None,
        trail_stop_price: float | None = None,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> OrderHandle:
        """A stop that follows the market by ``trailing_amount`` or ``trailing_percent``.

        ``trail_stop_price`` sets the initial stop; without it TWS starts from
        the current price.
        """
        return await self._place(
            symbol, quantity, action, OrderType.TRAILING_STOP, wait_timeout, ack_timeout, options,
            trailing_amount=trailing_amount, trailing_percent=trailing_percent,
            trail_stop_price=trail_stop_price,
        )  # fmt: skip

    async def place_bracket_order(  # noqa: PLR0917
        self,
        symbol: ContractLike,
        quantity: float,
        action: str | OrderAction,
        limit_price: float,
        take_profit_price: float,
        stop_loss_price: float,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **options: Unpack[OrderOptions],
    ) -> BracketOrder:
        """A limit entry with a take-profit limit and a stop-loss stop as an OCA pair.

        Returns ``BracketOrder(parent, take_profit, stop_loss)`` once all three
        are acknowledged. The exits work once the entry has filled. ``options``
        apply to all three (``oca_group`` is refused: the exits already form one).
        """
        return await self._orders.place_bracket_order(
            symbol, quantity, action, limit_price, take_profit_price, stop_loss_price,
            wait_timeout=timeout_arg("wait_timeout", wait_timeout),
            ack_timeout=timeout_arg("ack_timeout", ack_timeout),
            **options,
        )  # fmt: skip

    async def modify_order(
        self,
        order: OrderLike,
        *,
        wait_timeout: float | None = None,
        ack_timeout: float | None = None,
        **changes: Unpack[OrderChanges],
    ) -> OrderHandle:
        """Change a working order; only the given fields change (see
        :class:`~ibconn.orders.spec.OrderChanges`: quantity, prices, tif, good_till,
        outside_rth, round_prices)."""
        return await self._orders.modify_order(
            order,
            wait_timeout=timeout_arg("wait_timeout", wait_timeout),
            ack_timeout=timeout_arg("ack_timeout", ack_timeout),
            **changes,
        )

    async def cancel_order(
        self,
        order: OrderLike,
        *,
        wait_timeout: float | None = None,
        timeout: float | None = None,
    ) -> OrderSnapshot:
        """Cancel an order; returns its final state (CANCELLED, or FILLED if it filled first)."""
        return await self._orders.cancel_order(
            order,
            wait_timeout=timeout_arg("wait_timeout", wait_timeout),
            timeout=timeout_arg("timeout", timeout),
        )

    async def cancel_all_orders(
        self, *, wait_timeout: float | None = None, timeout: float | None = None
    ) -> list[OrderSnapshot]:
        """Cancel every working order of this connector; returns their final states.

        Raises :class:`~ibconn.errors.CancelNotConfirmedError` naming every order
        whose end could not be confirmed (it may still work at the broker).
        """
        return await self._orders.cancel_all_orders(
            wait_timeout=timeout_arg("wait_timeout", wait_timeout),
            timeout=timeout_arg("timeout", timeout),
        )

    def get_order_status(self, order: OrderLike) -> OrderSnapshot:
        """The locally tracked state of an order: status, fills, commissions, last error."""
        return self._orders.get_order_status(order)

    def orders(self, *, working_only: bool = False) -> list[OrderSnapshot]:
        """Every order this connector knows (placed or adopted), in placement order."""
        return self._orders.orders(working_only=working_only)

    def executions(self) -> list[Fill]:
        """Every execution known to this connector, oldest first (no round trip).

        It holds the fills of this run and the executions TWS reports at connect:
        today's, of this client id (client id 0: of every client). A corrected
        execution appears once, with its latest values.
        """
        return self._orders.executions()

    async def wait_for_order(
        self,
        order: OrderLike,
        until: OrderStatus
        | Collection[OrderStatus]
        | Callable[[OrderSnapshot], bool]
        | None = None,
        timeout: float | None = None,
    ) -> OrderSnapshot:
        """Wait until the order reaches ``until`` or a final status (default: final)."""
        return await self._orders.wait_for_order(order, until, timeout_arg("timeout", timeout))

    def order_updates(
        self, order: OrderLike | None = None, capacity: int | None = None
    ) -> Subscription[OrderUpdate]:
        """An async iterator of order changes from now on; never drops an update."""
        return self._orders.order_updates(order, capacity_arg("capacity", capacity))

    def fills(self, symbol: str | None = None, capacity: int | None = None) -> Subscription[Fill]:
        """An async iterator of fills from now on, each exactly once; never drops one."""
        return self._orders.fills(symbol, capacity_arg("capacity", capacity))
