"""Order entry: :class:`OrderEntry` validates, places, modifies and cancels orders
and answers what-if requests, as TWS does."""

from __future__ import annotations

from ibconn.core.logs import get_logger
from ibconn.sim.broker.accounts import (
    DEFAULT_COMMISSIONS,
    MarginRate,
    order_commission,
)
from ibconn.sim.broker.engine import MatchingEngine
from ibconn.sim.broker.matching import (
    conforms_to_tick,
    is_size_multiple,
    touch,
)
from ibconn.sim.broker.records import (
    MAX_PRICE,
    MAX_TRAILING_PERCENT,
    ORDER_TYPES,
    TIFS,
    OrderPreview,
    OrderRequest,
    SimOrder,
    parse_tws_time,
)
from ibconn.sim.broker.rules import (
    BAD_SIZE,
    BAD_TICK,
    DUPLICATE_ID,
    EPS,
    FILLED_MODIFY,
    NO_SECURITY,
    READ_ONLY,
    STOP_TYPES,
    ZERO_SIZE,
    resolve_instrument,
    size_limit_error,
    validation_error,
)
from ibconn.sim.market.instruments import Instrument

__all__ = ["OrderEntry"]

_log = get_logger("sim")


class OrderEntry(MatchingEngine):
    """Order requests on top of the matching engine (see the module doc)."""

    # ------------------------------------------------------------------ requests

    def place_order(self, client_id: int, request: OrderRequest) -> SimOrder | None:
        """Place a new order or modify ``(client_id, request.order_id)``.

        Returns the order, or ``None`` when it was rejected (an
        :class:`OrderErrorEvent` was emitted). ``request.what_if`` is
        answered by :meth:`what_if` instead.
        """
        if request.what_if:
            self.what_if(client_id, request)
            return None
        if self.read_only:
            self._error(client_id, request.order_id, READ_ONLY)
            return None
        self._max_order_id = max(self._max_order_id, request.order_id)
        existing = self._by_key.get((client_id, request.order_id))
        if existing is not None:
            return self._modify(existing, request)
        checked = self._validate(client_id, request)
        if checked is None:
            return None
        inst, account = checked
        parent: SimOrder | None = None
        if request.parent_id:
            parent = self._by_key.get((client_id, request.parent_id))
            if parent is None:
                missing = (135, f"Can't find order with id ={request.parent_id}")
                self._error(client_id, request.order_id, missing)
                return None
        order = SimOrder(
            client_id=client_id,
            order_id=request.order_id,
            perm_id=self._next_perm,
            instrument=inst,
            action=request.action.upper(),
            total_quantity=float(request.total_quantity),
            order_type=request.order_type.upper(),
            account=account,
            exchange=request.exchange or inst.exchange,
            created=self.clock(),
        )
        self._next_perm += 1
        self._apply_request(order, request)
        order.order_ref = request.order_ref
        order.open_close = request.open_close
        order.origin = request.origin
        order.parent_id = request.parent_id
        order.parent_perm_id = parent.perm_id if parent else 0
        order.transmit = request.transmit
        self._orders[order.perm_id] = order
        self._by_key[(client_id, order.order_id)] = order
        _log.debug(
            "order {}/{} {} {} {} {} accepted",
            client_id, order.order_id, order.action, order.total_quantity,
            inst.symbol, order.order_type,
        )  # fmt: skip
        if parent is not None and parent.is_done and parent.status != "Filled":
            self._cancel(order, notify=True)
            return order
        if request.transmit:
            self._transmit_family(order)
        return order

    def _validate(self, client_id: int, req: OrderRequest) -> tuple[Instrument, str] | None:
        inst = resolve_instrument(self.instruments, req)
        if inst is None:
            self._error(client_id, req.order_id, NO_SECURITY)
            return None
        account = req.account or self.default_account
        if account not in self.accounts:
            self._error(client_id, req.order_id, validation_error(f"Invalid account: {account}"))
            return None
        if not self._check_fields(client_id, req, inst):
            return None
        return inst, account

    def _check_fields(self, client_id: int, req: OrderRequest, inst: Instrument) -> bool:
        oid = req.order_id
        action = req.action.upper()
        order_type = req.order_type.upper()
        tif = (req.tif or "DAY").upper()
        if action not in {"BUY", "SELL"}:
            self._error(client_id, oid, validation_error(f"Invalid action: {req.action}"))
            return False
        if not req.total_quantity > 0:  # also NaN
            self._error(client_id, oid, ZERO_SIZE)
            return False
        if not req.total_quantity <= self.config.max_order_size:  # also inf
            self._error(client_id, oid, size_limit_error(oid, self.config.max_order_size))
            return False
        if not is_size_multiple(req.total_quantity, inst.size_increment):
            self._error(client_id, oid, BAD_SIZE)
            return False
        if order_type not in ORDER_TYPES:
            self._error(
                client_id, oid, (387, "Unsupported order type for this exchange and security type.")
            )
            return False
        if tif not in TIFS:
            self._error(client_id, oid, validation_error(f"Invalid time in force: {req.tif}"))
            return False
        if tif == "GTD" and parse_tws_time(req.good_till_date) is None:
            self._error(client_id, oid, validation_error("Invalid good till date"))
            return False
        if order_type in {"LMT", "STP LMT"} and req.lmt_price is None:
            self._error(client_id, oid, validation_error("Missing limit price"))
            return False
        if order_type in {"STP", "STP LMT"} and req.aux_price is None:
            self._error(client_id, oid, validation_error("Missing stop price"))
            return False
        if order_type == "TRAIL" and not (
            (req.aux_price is not None and req.aux_price > 0)
            or (req.trailing_percent is not None and req.trailing_percent > 0)
        ):
            self._error(client_id, oid, validation_error("Missing trailing amount or percent"))
            return False
        prices: list[tuple[str, float | None]] = []
        if order_type in {"LMT", "STP LMT"}:
            prices.append(("limit price", req.lmt_price))
        if order_type in {"STP", "STP LMT"}:
            prices.append(("stop price", req.aux_price))
        if order_type == "TRAIL":
            prices.append(("trailing amount", req.aux_price))
            prices.append(("trail stop price", req.trail_stop_price))
        for name, price in prices:
            if price is not None and not 0 < price <= MAX_PRICE:  # also NaN and inf
                if name == "trailing amount" and price <= 0:
                    continue  # unset: the trailing percent applies
                cause = f"Invalid {name} {price:g}: allowed above 0 up to {MAX_PRICE:g}"
                self._error(client_id, oid, validation_error(cause))
                return False
        percent = req.trailing_percent
        uses_percent = not (req.aux_price is not None and req.aux_price > 0)
        in_range = percent is None or 0 < percent < MAX_TRAILING_PERCENT
        if order_type == "TRAIL" and uses_percent and not in_range:
            cause = (
                f"Invalid trailing percent {percent:g}: "
                f"allowed above 0 and below {MAX_TRAILING_PERCENT:g}"
            )
            self._error(client_id, oid, validation_error(cause))
            return False
        for _name, price in prices:
            if price is not None and price > 0 and not conforms_to_tick(price, inst.min_tick):
                self._error(client_id, oid, BAD_TICK)
                return False
        return True

    @staticmethod
    def _apply_request(order: SimOrder, req: OrderRequest) -> None:
        """Copy the modifiable fields of ``req`` into ``order``."""
        order.action = req.action.upper()
        order.total_quantity = float(req.total_quantity)
        order.order_type = req.order_type.upper()
        order.lmt_price = req.lmt_price if order.order_type in {"LMT", "STP LMT"} else None
        order.aux_price = req.aux_price if order.order_type in STOP_TYPES else None
        order.tif = (req.tif or "DAY").upper()
        order.oca_group = req.oca_group
        order.oca_type = req.oca_type
        order.outside_rth = req.outside_rth
        order.hidden = req.hidden
        order.good_after_time = req.good_after_time
        order.good_till_date = req.good_till_date
        order.trailing_percent = (
            req.trailing_percent if order.order_type == "TRAIL" and not order.aux_price else None
        )
        if order.order_type == "TRAIL":
            if order.aux_price is not None and order.aux_price <= 0:
                order.aux_price = None
            if req.trail_stop_price is not None:
                order.trail_stop_price = req.trail_stop_price
        else:
            order.trail_stop_price = None

    def _modify(self, order: SimOrder, req: OrderRequest) -> SimOrder | None:
        cid, oid = order.client_id, order.order_id
        if order.status == "Filled":
            self._error(cid, oid, FILLED_MODIFY)
            return None
        if order.is_done:
            self._error(cid, oid, DUPLICATE_ID)
            return None
        if not self._check_fields(cid, req, order.instrument):
            return None
        if req.total_quantity < order.filled - EPS:
            self._error(
                cid, oid, validation_error("The order size cannot be less than the filled quantity")
            )
            return None
        old_type = order.order_type
        self._apply_request(order, req)
        if order.order_type != old_type:
            order.triggered = False
        if order.order_type == "TRAIL" and req.trail_stop_price is None and not order.triggered:
            order.trail_stop_price = None
        order.resting = False
        _log.debug("order {}/{} modified", cid, oid)
        if order.status == "PendingSubmit":
            order.transmit = req.transmit
            if req.transmit:
                self._transmit_family(order)
            return order
        if order.filled >= order.total_quantity - EPS:
            self._finish(order, "Filled")
            self._emit_order(order)
            return order
        if order.order_type == "TRAIL" and order.trail_stop_price is None:
            self._init_trail(order, self.quote(order.instrument))
        self._set_working_status(order)
        self._emit_order(order)
        if not order.awaiting_parent:
            self._arrive(order)
        return order

    def _transmit_family(self, order: SimOrder) -> None:
        """Transmit ``order`` with its held parent and held siblings (a bracket)."""
        root = order
        if order.parent_id:
            parent = self._by_key.get((order.client_id, order.parent_id))
            if parent is not None:
                root = parent
        family = [root] + [
            o
            for o in self._orders.values()
            if o is not root and o.client_id == root.client_id and o.parent_perm_id == root.perm_id
        ]
        to_send = [o for o in family if o.status == "PendingSubmit"]
        if order not in to_send and order.status == "PendingSubmit":
            to_send.append(order)
        for o in to_send:
            o.transmit = True
            parent_filled = True
            if o.parent_id:
                parent = self._by_key.get((o.client_id, o.parent_id))
                parent_filled = parent is None or parent.status == "Filled"
            o.awaiting_parent = not parent_filled
            self._set_working_status(o)
            if o.order_type == "TRAIL":
                self._init_trail(o, self.quote(o.instrument))
            self._live.setdefault(o.instrument.con_id, {})[o.perm_id] = o
            self._emit_order(o)
        for o in to_send:
            if o.is_working and not o.awaiting_parent:
                self._arrive(o)

    def cancel_order(self, client_id: int, order_id: int) -> None:
        """cancelOrder (msg 4) from ``client_id``."""
        if self.read_only:
            self._error(client_id, order_id, READ_ONLY)
            return
        order = self._by_key.get((client_id, order_id))
        if order is None:
            self._error(
                client_id,
                order_id,
                (10147, f"OrderId {order_id} that needs to be cancelled is not found."),
            )
            return
        if order.is_done:
            self._error(
                client_id,
                order_id,
                (
                    10148,
                    f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                    f"state: {order.status}.",
                ),
            )
            return
        self._cancel(order, notify=True)

    def global_cancel(self, client_id: int) -> None:
        """reqGlobalCancel (msg 58): cancel every order of every client."""
        if self.read_only:
            self._error(client_id, -1, READ_ONLY)
            return
        for order in list(self._orders.values()):
            if not order.is_done:
                self._cancel(order, notify=True)

    def what_if(self, client_id: int, request: OrderRequest) -> OrderPreview | None:
        """Preview ``request`` (margin and commission) without placing it.

        Returns ``None`` after emitting an :class:`OrderErrorEvent` when the
        request would be rejected.
        """
        if self.read_only:
            self._error(client_id, request.order_id, READ_ONLY)
            return None
        checked = self._validate(client_id, request)
        if checked is None:
            return None
        inst, account = checked
        order = SimOrder(
            client_id=client_id,
            order_id=request.order_id,
            perm_id=0,
            instrument=inst,
            action=request.action.upper(),
            total_quantity=float(request.total_quantity),
            order_type=request.order_type.upper(),
            account=account,
            exchange=request.exchange or inst.exchange,
            created=self.clock(),
        )
        self._apply_request(order, request)
        order.order_ref = request.order_ref
        order.status = "PreSubmitted"
        quote = self.quote(inst)
        price = order.lmt_price or touch(order.action, quote) or inst.start_price
        mult = inst.multiplier
        qty = order.total_quantity
        rate = self.commissions.get(inst.sec_type, DEFAULT_COMMISSIONS["STK"])
        commission = order_commission(rate, qty, qty * price * mult)
        before = self.account_figures(account)
        margin = self.config.margins.get(inst.sec_type, MarginRate(1.0, 1.0))
        mark = quote.mark or price
        held = self.ledger.quantity(account, inst.con_id)
        signed = qty if order.action == "BUY" else -qty
        change_notional = (abs(held + signed) - abs(held)) * mark * mult
        init_change = change_notional * margin.initial
        maint_change = change_notional * margin.maintenance
        ewl_change = -commission
        return OrderPreview(
            order=order,
            init_margin_before=before.init_margin,
            maint_margin_before=before.maint_margin,
            equity_with_loan_before=before.equity_with_loan,
            init_margin_change=init_change,
            maint_margin_change=maint_change,
            equity_with_loan_change=ewl_change,
            init_margin_after=before.init_margin + init_change,
            maint_margin_after=before.maint_margin + maint_change,
            equity_with_loan_after=before.equity_with_loan + ewl_change,
            commission=commission,
            min_commission=commission,
            max_commission=commission,
            commission_currency=rate.currency,
        )
