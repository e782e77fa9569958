"""The client flows for ib_insync and ib_async (same API): ``--lib ib_insync|ib_async``.

Runs in the client's own virtualenv (it imports only that client, never ibconn)
against a running ``python -m ibconn sim``. Prints one ``RESULT <client> <flow>
PASS|FAIL <detail>`` line per flow and exits 1 when any flow failed.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from flow_common import FlowFailed, run_steps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", choices=["ib_insync", "ib_async"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", default=None)
    parser.add_argument("--client-id", type=int, default=7)
    args = parser.parse_args()
    lib: Any = importlib.import_module(args.lib)
    label = args.label or args.lib
    ib = lib.IB()
    state: dict[str, Any] = {}

    def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise FlowFailed(f"timed out after {timeout} s waiting for {what}")
            ib.sleep(0.05)

    def check(ok: bool, detail: str) -> None:
        if not ok:
            raise FlowFailed(detail)

    def connect() -> str:
        ib.connect("127.0.0.1", args.port, clientId=args.client_id, timeout=10)
        version = ib.client.serverVersion()
        check(ib.isConnected(), "not connected")
        return f"server version {version}"

    def contract_details() -> str:
        (cd,) = ib.reqContractDetails(lib.Stock("AAPL", "SMART", "USD"))
        check(cd.contract.conId == 265598, f"conId {cd.contract.conId}")
        isin = [t.value for t in (cd.secIdList or []) if t.tag == "ISIN"]
        check(isin == ["US0378331005"], f"secIdList {cd.secIdList}")
        state["aapl"] = cd.contract
        return f"conId {cd.contract.conId}, ISIN {isin[0]}"

    def quotes() -> str:
        ticker = ib.reqMktData(state["aapl"], "", False, False)
        wait(lambda: ticker.bid > 0 and ticker.ask > 0, 10, "bid/ask")
        state["price"] = (ticker.bid + ticker.ask) / 2
        ib.cancelMktData(state["aapl"])
        return f"bid {ticker.bid} ask {ticker.ask}"

    def tick_by_tick() -> str:
        ticker = ib.reqTickByTickData(state["aapl"], "BidAsk")
        wait(lambda: ticker.tickByTicks, 10, "a tick-by-tick bid/ask")
        count = len(ticker.tickByTicks)
        ib.cancelTickByTickData(state["aapl"], "BidAsk")
        return f"{count} BidAsk ticks"

    def real_time_bars() -> str:
        bars = ib.reqRealTimeBars(state["aapl"], 5, "MIDPOINT", False)
        wait(lambda: len(bars) >= 1, 15, "a 5-second bar")
        ib.cancelRealTimeBars(bars)
        return f"{len(bars)} bar(s), close {bars[-1].close}"

    def historical_bars() -> str:
        bars = ib.reqHistoricalData(
            state["aapl"], "", "1 D", "5 mins", "TRADES", useRTH=False, formatDate=1
        )
        check(len(bars) > 10, f"{len(bars)} bars")
        return f"{len(bars)} bars"

    def done(trade: Any) -> bool:
        return trade.orderStatus.status in {"Cancelled", "ApiCancelled", "Filled", "Inactive"}

    def working(trade: Any) -> bool:
        return trade.orderStatus.status in {"Submitted", "PreSubmitted"}

    def limit_modify_cancel() -> str:
        price = round(state["price"] * 0.5, 2)
        order = lib.LimitOrder("BUY", 3, price, ocaGroup=f"oca-{label}", ocaType=3)
        trade = ib.placeOrder(state["aapl"], order)
        wait(lambda: working(trade), 10, "Submitted")
        order.lmtPrice = round(price + 1, 2)
        ib.placeOrder(state["aapl"], order)
        wait(
            lambda: any(
                abs(t.order.lmtPrice - (price + 1)) < 1e-9 and t.order.orderId == order.orderId
                for t in ib.openTrades()
            ),
            10,
            "the modified price",
        )
        check(trade.order.ocaType == 3, f"ocaType came back as {trade.order.ocaType}")
        ib.cancelOrder(order)
        wait(lambda: done(trade), 10, "Cancelled")
        check(trade.orderStatus.status == "Cancelled", trade.orderStatus.status)
        return f"lmt {price} -> {price + 1}, ocaType 3, {trade.orderStatus.status}"

    def market_order() -> str:
        trade = ib.placeOrder(state["aapl"], lib.MarketOrder("BUY", 10))
        wait(lambda: trade.orderStatus.status == "Filled", 10, "Filled")
        wait(
            lambda: trade.fills and all(f.commissionReport.commission > 0 for f in trade.fills),
            10,
            "the commission report",
        )
        state["exec_ids"] = {f.execution.execId for f in trade.fills}
        fill = trade.fills[0]
        return (
            f"filled {trade.orderStatus.filled} @ {trade.orderStatus.avgFillPrice}, "
            f"commission {fill.commissionReport.commission}"
        )

    def stop_modify_cancel() -> str:
        stop = round(state["price"] * 1.5, 2)
        order = lib.StopOrder("BUY", 2, stop)
        trade = ib.placeOrder(state["aapl"], order)
        wait(lambda: working(trade), 10, "Submitted")
        order.auxPrice = round(stop + 1, 2)
        ib.placeOrder(state["aapl"], order)
        wait(lambda: abs(trade.order.auxPrice - (stop + 1)) < 1e-9, 10, "the modified stop")
        ib.cancelOrder(order)
        wait(lambda: done(trade), 10, "Cancelled")
        check(trade.orderStatus.status == "Cancelled", trade.orderStatus.status)
        return f"stop {stop} -> {stop + 1}, {trade.orderStatus.status}"

    def trailing_cancel() -> str:
        order = lib.Order(action="BUY", totalQuantity=1, orderType="TRAIL", trailingPercent=5.0)
        trade = ib.placeOrder(state["aapl"], order)
        wait(lambda: working(trade) or done(trade), 10, "Submitted")
        check(working(trade), f"status {trade.orderStatus.status} {trade.log[-1].message}")
        ib.cancelOrder(order)
        wait(lambda: done(trade), 10, "Cancelled")
        return f"trailingPercent 5, {trade.orderStatus.status}"

    def executions() -> str:
        fills = ib.reqExecutions()
        got = {f.execution.execId for f in fills}
        check(state["exec_ids"] <= got, f"executions {got}")
        # The answer's commission reports update the client's fills by execId.
        known = {f.execution.execId: f for f in ib.fills()}
        ours = [known[e] for e in state["exec_ids"]]
        check(all(f.commissionReport.commission > 0 for f in ours), "no commission")
        return f"{len(fills)} execution(s), commission {ours[0].commissionReport.commission}"

    def positions() -> str:
        wait(lambda: [p for p in ib.positions() if p.contract.conId == 265598], 10, "position")
        pos = [p for p in ib.reqPositions() if p.contract.conId == 265598]
        check(bool(pos) and pos[0].position == 10, f"positions {pos}")
        return f"AAPL {pos[0].position} @ {pos[0].avgCost:.4f}"

    def account_summary() -> str:
        values = ib.accountSummary()
        net = [v for v in values if v.tag == "NetLiquidation"]
        check(bool(net), "no NetLiquidation")
        return f"{len(values)} values, NetLiquidation {net[0].value}"

    def what_if() -> str:
        state_ = ib.whatIfOrder(state["aapl"], lib.MarketOrder("BUY", 100))
        change = getattr(state_, "initMarginChange", "")
        check(
            change not in ("", None)
            and not (isinstance(change, float) and math.isnan(change))
            and float(change) > 0,
            f"initMarginChange {change!r}",
        )
        return f"initMarginChange {change}"

    def reconnect() -> str:
        ib.disconnect()
        ib.sleep(0.2)
        ib.connect("127.0.0.1", args.port, clientId=args.client_id, timeout=10)
        pos = [p for p in ib.positions() if p.contract.conId == 265598]
        check(bool(pos), "no position after reconnect")
        check(bool(ib.reqExecutions()), "no executions after reconnect")
        return f"reconnected, AAPL {pos[0].position}"

    steps: list[Callable[[], str]] = [
        connect, contract_details, quotes, tick_by_tick, real_time_bars, historical_bars,
        limit_modify_cancel, market_order, stop_modify_cancel, trailing_cancel, executions,
        positions, account_summary, what_if, reconnect,
    ]  # fmt: skip
    failed = run_steps(label, steps, ib.isConnected)
    ib.disconnect()
    return failed


if __name__ == "__main__":
    sys.exit(main())
