"""The client flows for IBKR's official Python client (``ibapi``), threaded as IBKR intends.

``--max-version N`` makes the client announce ``v100..N`` instead of its own
maximum, so its decoder and encoder really take their version-N paths: with
ibapi-stable 10.37.2 and ``--max-version 176`` it stands in for API 10.19 (not
on PyPI). Runs in the client's own virtualenv against a running ``python -m
ibconn sim``; prints one ``RESULT <client> <flow> PASS|FAIL <detail>`` line per
flow and exits 1 when any flow failed.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ibapi.client
from flow_common import FlowFailed, run_steps
from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.wrapper import EWrapper


class App(EWrapper, EClient):  # type: ignore[misc]
    """Records every callback the flows look at; ``wait`` polls under a lock."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.lock = threading.Lock()
        self.next_id = 0
        self.errors: list[tuple[int, int, str]] = []
        self.details: dict[int, list[Any]] = {}
        self.ended: set[int] = set()
        self.prices: dict[tuple[int, int], float] = {}
        self.tbt: dict[int, int] = {}
        self.rt_bars: dict[int, list[Any]] = {}
        self.hist: dict[int, list[Any]] = {}
        self.open_orders: dict[int, tuple[Any, Any, Any]] = {}
        self.status: dict[int, str] = {}
        self.filled: dict[int, Decimal] = {}
        self.executions: dict[str, Any] = {}
        self.exec_by_req: dict[int, list[str]] = {}
        self.commissions: dict[str, float] = {}
        self.positions: dict[int, Decimal] = {}
        self.positions_done = False
        self.summary: dict[int, dict[str, str]] = {}

    # connection
    def nextValidId(self, orderId: int) -> None:
        with self.lock:
            self.next_id = max(self.next_id, orderId)

    def error(self, reqId: int, *args: Any) -> None:
        # 10.50: (errorTime, code, text, json); 10.37: (code, text, json)
        nums = [a for a in args if isinstance(a, int)]
        texts = [a for a in args if isinstance(a, str)]
        code = nums[-1] if nums else -1
        with self.lock:
            self.errors.append((reqId, code, texts[0] if texts else ""))

    # contract details
    def contractDetails(self, reqId: int, contractDetails: Any) -> None:
        with self.lock:
            self.details.setdefault(reqId, []).append(contractDetails)

    def contractDetailsEnd(self, reqId: int) -> None:
        with self.lock:
            self.ended.add(reqId)

    # market data
    def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
        with self.lock:
            self.prices[(reqId, tickType)] = price

    def tickByTickBidAsk(self, reqId: int, *args: Any) -> None:
        with self.lock:
            self.tbt[reqId] = self.tbt.get(reqId, 0) + 1

    def realtimeBar(self, reqId: int, *args: Any) -> None:
        with self.lock:
            self.rt_bars.setdefault(reqId, []).append(args)

    def historicalData(self, reqId: int, bar: Any) -> None:
        with self.lock:
            self.hist.setdefault(reqId, []).append(bar)

    def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
        with self.lock:
            self.ended.add(reqId)

    # orders
    def openOrder(self, orderId: int, contract: Any, order: Any, orderState: Any) -> None:
        with self.lock:
            self.open_orders[orderId] = (contract, order, orderState)

    def orderStatus(self, orderId: int, status: str, filled: Decimal, *args: Any) -> None:
        with self.lock:
            self.status[orderId] = status
            self.filled[orderId] = Decimal(filled)

    def execDetails(self, reqId: int, contract: Any, execution: Any) -> None:
        with self.lock:
            self.executions[execution.execId] = execution
            self.exec_by_req.setdefault(reqId, []).append(execution.execId)

    def execDetailsEnd(self, reqId: int) -> None:
        with self.lock:
            self.ended.add(reqId)

    def commissionReport(self, report: Any) -> None:  # up to 10.3x
        with self.lock:
            self.commissions[report.execId] = report.commission

    def commissionAndFeesReport(self, report: Any) -> None:  # 10.4x and later
        with self.lock:
            self.commissions[report.execId] = report.commissionAndFees

    # portfolio
    def position(self, account: str, contract: Any, position: Decimal, avgCost: float) -> None:
        with self.lock:
            self.positions[contract.conId] = Decimal(position)

    def positionEnd(self) -> None:
        with self.lock:
            self.positions_done = True

    def accountSummary(self, reqId: int, account: str, tag: str, value: str, cur: str) -> None:
        with self.lock:
            self.summary.setdefault(reqId, {})[tag] = value

    def accountSummaryEnd(self, reqId: int) -> None:
        with self.lock:
            self.ended.add(reqId)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", default="ibapi")
    parser.add_argument("--client-id", type=int, default=8)
    parser.add_argument("--max-version", type=int, default=None)
    args = parser.parse_args()
    if args.max_version is not None:
        ibapi.client.MAX_CLIENT_VER = args.max_version  # what connect() announces
    label = args.label
    app = App()
    state: dict[str, Any] = {"req": 1000}
    thread: list[threading.Thread] = []

    def req_id() -> int:
        state["req"] += 1
        return int(state["req"])

    def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            with app.lock:
                value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise FlowFailed(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.02)

    def check(ok: bool, detail: str) -> None:
        if not ok:
            raise FlowFailed(detail)

    def errors_for(rid: int) -> list[tuple[int, int, str]]:
        return [e for e in app.errors if e[0] == rid]

    def start() -> None:
        app.connect("127.0.0.1", args.port, args.client_id)
        t = threading.Thread(target=app.run, daemon=True)
        t.start()
        thread[:] = [t]
        wait(lambda: app.next_id > 0, 10, "nextValidId")

    def stop() -> None:
        # The reader thread holds the socket until its 1-s receive timeout: only after
        # it ends is the connection really closed (else TWS says 326, id in use).
        reader = app.reader
        app.disconnect()
        for t in [*thread, *([reader] if reader is not None else [])]:
            t.join(10)

    def next_order_id() -> int:
        with app.lock:
            oid = app.next_id
            app.next_id += 1
        return oid

    def cancel(order_id: int) -> None:
        params = inspect.signature(app.cancelOrder).parameters
        if "orderCancel" in params:
            from ibapi.order_cancel import OrderCancel  # noqa: PLC0415 - 10.4x and later

            app.cancelOrder(order_id, OrderCancel())
        else:
            app.cancelOrder(order_id, "")

    def aapl() -> Contract:
        c = Contract()
        c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
        return c

    def connect() -> str:
        start()
        version = app.serverVersion()
        if args.max_version is not None:
            check(version == args.max_version, f"negotiated {version}")
        return f"server version {version}"

    def contract_details() -> str:
        rid = req_id()
        app.reqContractDetails(rid, aapl())
        wait(lambda: rid in app.ended or errors_for(rid), 10, "contractDetailsEnd")
        (cd,) = app.details[rid]
        check(cd.contract.conId == 265598, f"conId {cd.contract.conId}")
        isin = [t.value for t in (cd.secIdList or []) if t.tag == "ISIN"]
        check(isin == ["US0378331005"], f"secIdList {cd.secIdList}")
        return f"conId {cd.contract.conId}, ISIN {isin[0]}"

    def quotes() -> str:
        rid = req_id()
        app.reqMktData(rid, aapl(), "", False, False, [])
        wait(lambda: app.prices.get((rid, 1), 0) > 0 and app.prices.get((rid, 2), 0) > 0,
             10, "bid/ask")  # fmt: skip
        bid, ask = app.prices[(rid, 1)], app.prices[(rid, 2)]
        state["price"] = (bid + ask) / 2
        app.cancelMktData(rid)
        return f"bid {bid} ask {ask}"

    def tick_by_tick() -> str:
        rid = req_id()
        app.reqTickByTickData(rid, aapl(), "BidAsk", 0, False)
        wait(lambda: app.tbt.get(rid, 0) > 0, 10, "a tick-by-tick bid/ask")
        app.cancelTickByTickData(rid)
        return f"{app.tbt[rid]} BidAsk ticks"

    def real_time_bars() -> str:
        rid = req_id()
        app.reqRealTimeBars(rid, aapl(), 5, "MIDPOINT", False, [])
        wait(lambda: app.rt_bars.get(rid), 15, "a 5-second bar")
        app.cancelRealTimeBars(rid)
        return f"{len(app.rt_bars[rid])} bar(s)"

    def historical_bars() -> str:
        rid = req_id()
        app.reqHistoricalData(rid, aapl(), "", "1 D", "5 mins", "TRADES", 0, 1, False, [])
        wait(lambda: rid in app.ended or errors_for(rid), 15, "historicalDataEnd")
        bars = app.hist.get(rid, [])
        check(len(bars) > 10, f"{len(bars)} bars, errors {errors_for(rid)}")
        return f"{len(bars)} bars"

    def working(oid: int) -> bool:
        return app.status.get(oid) in {"Submitted", "PreSubmitted"}

    def final(oid: int) -> bool:
        return app.status.get(oid) in {"Cancelled", "ApiCancelled", "Filled", "Inactive"}

    def limit_modify_cancel() -> str:
        price = round(state["price"] * 0.5, 2)
        oid = next_order_id()
        o = Order()
        o.action, o.totalQuantity, o.orderType, o.lmtPrice = "BUY", Decimal(3), "LMT", price
        o.ocaGroup, o.ocaType = f"oca-{label}", 3
        app.placeOrder(oid, aapl(), o)
        wait(lambda: working(oid) or errors_for(oid), 10, "Submitted")
        check(working(oid), f"errors {errors_for(oid)}")
        o.lmtPrice = round(price + 1, 2)
        app.placeOrder(oid, aapl(), o)
        wait(lambda: abs(app.open_orders[oid][1].lmtPrice - (price + 1)) < 1e-9, 10,
             "the modified price")  # fmt: skip
        check(app.open_orders[oid][1].ocaType == 3, "ocaType lost")
        cancel(oid)
        wait(lambda: final(oid), 10, "Cancelled")
        check(app.status[oid] == "Cancelled", app.status[oid])
        return f"lmt {price} -> {price + 1}, ocaType 3, {app.status[oid]}"

    def market_order() -> str:
        oid = next_order_id()
        o = Order()
        o.action, o.totalQuantity, o.orderType = "BUY", Decimal(10), "MKT"
        app.placeOrder(oid, aapl(), o)
        wait(lambda: app.status.get(oid) == "Filled" or errors_for(oid), 10, "Filled")
        check(app.status.get(oid) == "Filled", f"errors {errors_for(oid)}")
        ids = wait(lambda: [e for e, x in app.executions.items() if x.orderId == oid], 10,
                   "execDetails")  # fmt: skip
        wait(lambda: all(app.commissions.get(e, 0) > 0 for e in ids), 10, "commission")
        state["exec_ids"] = set(ids)
        return f"filled {app.filled[oid]}, commission {app.commissions[ids[0]]}"

    def stop_modify_cancel() -> str:
        stop_price = round(state["price"] * 1.5, 2)
        oid = next_order_id()
        o = Order()
        o.action, o.totalQuantity, o.orderType, o.auxPrice = "BUY", Decimal(2), "STP", stop_price
        app.placeOrder(oid, aapl(), o)
        wait(lambda: working(oid) or errors_for(oid), 10, "Submitted")
        check(working(oid), f"errors {errors_for(oid)}")
        o.auxPrice = round(stop_price + 1, 2)
        app.placeOrder(oid, aapl(), o)
        wait(lambda: abs(app.open_orders[oid][1].auxPrice - (stop_price + 1)) < 1e-9, 10,
             "the modified stop")  # fmt: skip
        cancel(oid)
        wait(lambda: final(oid), 10, "Cancelled")
        return f"stop {stop_price} -> {stop_price + 1}, {app.status[oid]}"

    def trailing_cancel() -> str:
        oid = next_order_id()
        o = Order()
        o.action, o.totalQuantity, o.orderType = "BUY", Decimal(1), "TRAIL"
        o.trailingPercent = 5.0
        app.placeOrder(oid, aapl(), o)
        wait(lambda: working(oid) or final(oid) or errors_for(oid), 10, "Submitted")
        check(working(oid), f"status {app.status.get(oid)}, errors {errors_for(oid)}")
        cancel(oid)
        wait(lambda: final(oid), 10, "Cancelled")
        return f"trailingPercent 5, {app.status[oid]}"

    def executions() -> str:
        rid = req_id()
        app.reqExecutions(rid, ExecutionFilter())
        wait(lambda: rid in app.ended, 10, "execDetailsEnd")
        got = set(app.exec_by_req.get(rid, []))
        check(state["exec_ids"] <= got, f"executions {got}")
        commission = app.commissions[next(iter(state["exec_ids"]))]
        return f"{len(got)} execution(s), commission {commission}"

    def positions() -> str:
        app.positions_done = False
        app.reqPositions()
        wait(lambda: app.positions_done, 10, "positionEnd")
        app.cancelPositions()
        check(app.positions.get(265598) == Decimal(10), f"positions {app.positions}")
        return f"AAPL {app.positions[265598]}"

    def account_summary() -> str:
        rid = req_id()
        app.reqAccountSummary(rid, "All", "NetLiquidation,BuyingPower,TotalCashValue")
        wait(lambda: rid in app.ended, 10, "accountSummaryEnd")
        app.cancelAccountSummary(rid)
        values = app.summary.get(rid, {})
        check("NetLiquidation" in values, f"values {values}")
        return f"NetLiquidation {values['NetLiquidation']}"

    def what_if() -> str:
        oid = next_order_id()
        o = Order()
        o.action, o.totalQuantity, o.orderType, o.whatIf = "BUY", Decimal(100), "MKT", True
        app.placeOrder(oid, aapl(), o)
        wait(lambda: oid in app.open_orders or errors_for(oid), 10, "the what-if openOrder")
        check(oid in app.open_orders, f"errors {errors_for(oid)}")
        change = app.open_orders[oid][2].initMarginChange
        check(change not in ("", None) and float(change) > 0, f"initMarginChange {change!r}")
        return f"initMarginChange {change}"

    def reconnect() -> str:
        stop()
        time.sleep(0.2)
        with app.lock:
            app.positions.clear()
            app.next_id = 0
        start()
        app.positions_done = False
        app.reqPositions()
        wait(lambda: app.positions_done or not app.isConnected(), 10, "positionEnd")
        check(app.positions.get(265598) == Decimal(10), f"positions {app.positions}, "
              f"connected {app.isConnected()}, errors {app.errors[-3:]}")  # fmt: skip
        return f"reconnected, server version {app.serverVersion()}"

    steps: list[Callable[[], str]] = [
        connect, contract_details, quotes, tick_by_tick, real_time_bars, historical_bars,
        limit_modify_cancel, market_order, stop_modify_cancel, trailing_cancel, executions,
        positions, account_summary, what_if, reconnect,
    ]  # fmt: skip
    failed = run_steps(label, steps, app.isConnected)
    stop()
    return failed


if __name__ == "__main__":
    sys.exit(main())
