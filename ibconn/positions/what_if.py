"""The what-if preview: TWS's margin and commission figures of an order that is not placed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ib_async import IB, Order, OrderState

from ibconn.core.codes import Severity, classify
from ibconn.core.numbers import number_or_none
from ibconn.errors import (
    ConnectionLostError,
    InvalidInputError,
    OrderRejectedError,
    RequestTimeoutError,
)
from ibconn.orders.convert import apply_spec
from ibconn.orders.models import OrderSpec
from ibconn.positions.account import AccountFigures
from ibconn.positions.models import WhatIfResult
from ibconn.positions.ports import OrderSource, PositionSettings
from ibconn.wire.ib_compat import end_request

__all__ = ["WhatIfPreview"]


class WhatIfPreview:
    """Sends an order with ``whatIf`` set and reads TWS's answer (an ``OrderState``)."""

    def __init__(
        self,
        orders: OrderSource,
        settings: PositionSettings,
        accounts: AccountFigures,
        require_ib: Callable[[str], IB],
    ) -> None:
        """``require_ib(what)`` is the session's ``IB``, or raises NotConnectedError."""
        self._orders = orders
        self._settings = settings
        self._accounts = accounts
        self._require_ib = require_ib

    async def preview(self, spec: OrderSpec, *, timeout: float | None = None) -> WhatIfResult:
        """TWS's margin and commission preview of ``spec``; the order is never placed.

        ``spec`` is validated like an order (:class:`InvalidInputError`); TWS
        refusing it raises :class:`OrderRejectedError`.
        """
        if not isinstance(spec, OrderSpec):
            raise InvalidInputError(f"what_if() takes an OrderSpec, got {type(spec).__name__}")
        self._require_ib("preview an order")
        orders = self._orders
        resolved = await orders.resolve(spec.symbol)
        checked = await orders.check(spec, resolved)
        ib = self._require_ib("preview an order")
        order = Order()
        apply_spec(order, checked)
        order.whatIf = True
        order.transmit = True
        account = checked.account or self._settings.account or self._accounts.default_account()
        if account:
            order.account = account
        loop = asyncio.get_running_loop()
        refused: asyncio.Future[tuple[int, str]] = loop.create_future()
        req_id = ib.client.getReqId()

        def on_error(error_req_id: int, code: int, message: str, contract: object) -> None:
            if error_req_id != req_id or refused.done():
                return
            info = classify(code, message, order_live=False)
            if info.severity.level_no >= Severity.ERROR.level_no:
                refused.set_result((code, message))

        answer: asyncio.Future[Any] = ib.wrapper.startReq(req_id, resolved.contract)
        ib.errorEvent += on_error
        limit = timeout if timeout is not None else self._settings.order_ack_timeout
        try:
            ib.client.placeOrder(req_id, resolved.contract, order)
            async with asyncio.timeout(limit):
                await asyncio.wait({answer, refused}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"TWS did not answer the what-if preview of {resolved.display_name} "
                f"within {limit} s"
            ) from exc
        except ConnectionError as exc:
            raise ConnectionLostError(
                "the what-if preview was not answered: the link to TWS is down"
            ) from exc
        finally:
            ib.errorEvent -= on_error
            if not answer.done():
                end_request(ib, req_id)
            if answer.done() and not answer.cancelled():
                answer.exception()  # retrieved: reported below if it matters
        if refused.done():
            code, message = refused.result()
            raise OrderRejectedError(
                f"TWS refused the what-if preview of {checked.action.value} "
                f"{checked.quantity:g} {resolved.display_name}: {code} {message}",
                code=code,
                text=message,
            )
        error = answer.exception()
        if isinstance(error, ConnectionError):
            raise ConnectionLostError(
                "the what-if preview was not answered: the link to TWS dropped"
            ) from error
        state = answer.result() if error is None else None
        if not isinstance(state, OrderState):
            raise OrderRejectedError(
                f"TWS gave no what-if preview for {checked.action.value} {checked.quantity:g} "
                f"{resolved.display_name}",
                code=0,
                text="no preview",
            )
        return WhatIfResult(
            account=account,
            symbol=resolved.display_name,
            con_id=resolved.con_id,
            action=checked.action,
            quantity=checked.quantity,
            init_margin_before=number_or_none(state.initMarginBefore),
            init_margin_change=number_or_none(state.initMarginChange),
            init_margin_after=number_or_none(state.initMarginAfter),
            maint_margin_before=number_or_none(state.maintMarginBefore),
            maint_margin_change=number_or_none(state.maintMarginChange),
            maint_margin_after=number_or_none(state.maintMarginAfter),
            equity_with_loan_before=number_or_none(state.equityWithLoanBefore),
            equity_with_loan_change=number_or_none(state.equityWithLoanChange),
            equity_with_loan_after=number_or_none(state.equityWithLoanAfter),
            commission=number_or_none(state.commission),
            min_commission=number_or_none(state.minCommission),
            max_commission=number_or_none(state.maxCommission),
            commission_currency=state.commissionCurrency or None,
            currency=self._accounts.base_currency(ib, account) if account else None,
            warning=state.warningText or None,
        )
