"""The market data requests: reqMktData (1) / cancelMktData (2), reqMarketDataType (59),
reqTickByTickData (97) / cancel (98), reqRealTimeBars (50) / cancel (51),
reqHistoricalData (20, incl. keepUpToDate) / cancelHistoricalData (25).

Permissions: an instrument without live data (``SimConfig.live_data``) gets
delayed data after reqMarketDataType(3 or 4) — marketDataType 58 = 3, error
10167, then the delayed tick types 66-76 and 88 — and error 10089 otherwise.
Tick-by-tick needs live data (10089); real-time bars too (420)."""

from __future__ import annotations

import math

from ibconn.sim.market.feeds import (
    BarBuilder,
    HistoryUpdateSub,
    MktDataSub,
    RealTimeBarsSub,
    TickByTickSub,
    price_for,
)
from ibconn.sim.market.history import (
    WHAT_TO_SHOW,
    HistoryRequestError,
    duration_bar_count,
    format_bar_time,
    generate_bars,
    parse_bar_size,
    parse_end_time,
)
from ibconn.sim.market.instruments import Instrument
from ibconn.sim.market.ports import MarketHandler, MarketHost
from ibconn.sim.market.ticks import RT_WHAT, TBT_KINDS, size_text
from ibconn.sim.protocol.fields import FieldReader
from ibconn.sim.protocol.ids import In, Out
from ibconn.sim.protocol.ports import ClientLink

__all__ = ["market_data_handlers"]


# --------------------------------------------------------------------------- handlers


def market_data_handlers() -> dict[int, MarketHandler]:
    """The market data request handlers, by incoming message id."""
    return {
        In.REQ_MKT_DATA: _req_mkt_data,
        In.CANCEL_MKT_DATA: _cancel_mkt_data,
        In.REQ_MARKET_DATA_TYPE: _req_market_data_type,
        In.REQ_TICK_BY_TICK_DATA: _req_tick_by_tick,
        In.CANCEL_TICK_BY_TICK_DATA: _cancel_tick_by_tick,
        In.REQ_REAL_TIME_BARS: _req_real_time_bars,
        In.CANCEL_REAL_TIME_BARS: _cancel_real_time_bars,
        In.REQ_HISTORICAL_DATA: _req_historical_data,
        In.CANCEL_HISTORICAL_DATA: _cancel_historical_data,
    }


def _live_or_delayed(
    gw: MarketHost, session: ClientLink, req_id: int, inst: Instrument
) -> bool | None:
    """``False`` = live, ``True`` = delayed, ``None`` = refused (error sent)."""
    if gw.config.has_live_data(inst):
        return False
    if session.market_data_type in (3, 4):
        return True
    exchange = inst.primary_exchange or inst.exchange
    session.send_error(
        req_id,
        10089,
        "Requested market data requires additional subscription for API. See link in "
        "'Market Data Connections' dialog for more details.Delayed market data is "
        f"available.{inst.symbol} {exchange}/TOP/ALL",
    )
    return None


def _duplicate(session: ClientLink, msg_id: int, req_id: int) -> None:
    session.send_error(
        req_id, 322, f"Error processing request.-'{msg_id}' : cause - Duplicate ticker id"
    )


def _req_mkt_data(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    if spec.sec_type == "BAG":
        legs = reader.read_int("comboLegsCount")
        reader.skip(4 * max(0, legs))
    if reader.read_bool("deltaNeutralContract"):
        reader.skip(3)
    reader.read_str("genericTickList")
    snapshot = reader.read_bool("snapshot")
    regulatory = reader.read_bool("regulatorySnapshot") if reader.remaining else False
    service = gw.market_data
    if service.get(session, "mkt", req_id) is not None:
        _duplicate(session, In.REQ_MKT_DATA, req_id)
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    delayed = _live_or_delayed(gw, session, req_id, inst)
    if delayed is None:
        return
    session.send(Out.MARKET_DATA_TYPE, 1, req_id, 3 if delayed else 1)
    if delayed:
        session.send_error(
            req_id,
            10167,
            "Requested market data is not subscribed. Displaying delayed market data.",
        )
    session.send(Out.TICK_REQ_PARAMS, req_id, inst.min_tick, "9c0001", 3)
    sub = MktDataSub(service, session, req_id, inst, delayed)
    frames = sub.snapshot_frames(gw.market.quote(inst.con_id))
    if not sub.halted:
        session.send_raw(b"".join(frames), len(frames))
    if snapshot or regulatory:
        session.send(Out.TICK_SNAPSHOT_END, 1, req_id)
        return
    service.add(sub)


def _cancel_mkt_data(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    if not gw.market_data.remove(session, "mkt", req_id):
        session.send_error(req_id, 300, f"Can't find EId with tickerId:{req_id}")


def _req_market_data_type(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    kind = reader.read_int("marketDataType")
    if kind not in (1, 2, 3, 4):
        session.send_error(
            -1, 321, f"Error validating request.-'59' : cause - Invalid market data type {kind}"
        )
        return
    session.market_data_type = kind


def _req_tick_by_tick(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    kind_text = reader.read_str("tickType")
    reader.read_opt_int("numberOfTicks", 0)
    if reader.remaining:
        reader.read_bool("ignoreSize")
    kind = TBT_KINDS.get(kind_text.replace(" ", "").upper())
    if kind is None:
        session.send_error(
            req_id, 321, f"Error validating request.-'97' : cause - Invalid tick type {kind_text}"
        )
        return
    service = gw.market_data
    if service.get(session, "tbt", req_id) is not None:
        _duplicate(session, In.REQ_TICK_BY_TICK_DATA, req_id)
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    if not gw.config.has_live_data(inst):
        session.send_error(
            req_id,
            10089,
            "Requested market data requires additional subscription for API. See link in "
            "'Market Data Connections' dialog for more details.",
        )
        return
    sub = TickByTickSub(service, session, req_id, inst, kind)
    service.add(sub)
    if kind in (3, 4):
        first = sub.frame(gw.market.quote(inst.con_id))
        if first is not None:
            session.send_raw(first)


def _cancel_tick_by_tick(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    gw.market_data.remove(session, "tbt", reader.read_int("reqId"))


def _req_real_time_bars(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    reader.read_opt_int("barSize", 5)
    what = reader.read_str("whatToShow").strip().upper()
    service = gw.market_data
    if service.get(session, "rtb", req_id) is not None:
        _duplicate(session, In.REQ_REAL_TIME_BARS, req_id)
        return
    if what not in RT_WHAT:
        session.send_error(
            req_id,
            321,
            "Error validating request.-'50' : cause - What to show field is missing or incorrect.",
        )
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    exchange = inst.primary_exchange or inst.exchange
    if not gw.config.has_live_data(inst):
        session.send_error(
            req_id,
            420,
            f"Invalid Real-time Query:No market data permissions for {exchange} {inst.sec_type}. "
            "Requested market data requires additional subscription for API. See link in "
            "'Market Data Connections' dialog for more details.",
        )
        return
    if what == "TRADES" and inst.sec_type == "CASH":
        session.send_error(
            req_id,
            420,
            f"Invalid Real-time Query:No TRADES data for {inst.symbol} {inst.sec_type}.",
        )
        return
    sub = RealTimeBarsSub(
        service, session, req_id, inst, what=what, quote=gw.market.quote(inst.con_id)
    )
    service.add(sub)
    service.start_task(sub, sub.run())


def _cancel_real_time_bars(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    gw.market_data.remove(session, "rtb", reader.read_int("reqId"))


def _history_error(session: ClientLink, req_id: int, text: str) -> None:
    session.send_error(req_id, 162, f"Historical Market Data Service error message:{text}")


def _req_historical_data(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    req_id = reader.read_int("reqId")
    spec = reader.read_contract()
    reader.read_bool("includeExpired")
    end_text = reader.read_str("endDateTime")
    bar_text = reader.read_str("barSizeSetting")
    duration = reader.read_str("durationStr")
    reader.read_bool("useRTH")
    what = reader.read_str("whatToShow").strip().upper()
    format_date = reader.read_opt_int("formatDate", 1) or 1
    if spec.sec_type == "BAG":
        legs = reader.read_int("comboLegsCount")
        reader.skip(4 * max(0, legs))
    keep_up_to_date = reader.read_bool("keepUpToDate") if reader.remaining else False
    service = gw.market_data
    if service.get(session, "hist", req_id) is not None:
        _duplicate(session, In.REQ_HISTORICAL_DATA, req_id)
        return
    inst = gw.resolve_contract(session, req_id, spec)
    if inst is None:
        return
    if what not in WHAT_TO_SHOW:
        session.send_error(
            req_id,
            321,
            "Error validating request.-'20' : cause - What to show field is missing or incorrect.",
        )
        return
    if what in {"TRADES", "ADJUSTED_LAST"} and inst.sec_type == "CASH":
        _history_error(
            session,
            req_id,
            f"No historical market data for {inst.symbol}/CASH@FXSUB Last {bar_text}",
        )
        return
    if keep_up_to_date and end_text.strip():
        session.send_error(
            req_id,
            321,
            "Error validating request.-'20' : cause - End date not supported with live updates",
        )
        return
    now = gw.clock.time()
    try:
        bar_seconds = parse_bar_size(bar_text)
        count = duration_bar_count(duration, bar_seconds)
        end = parse_end_time(end_text, gw.timezone, now)
    except HistoryRequestError as exc:
        session.send_error(req_id, 321, f"Error validating request.-'20' : cause - {exc}")
        return
    if count > gw.config.max_historical_bars:
        _history_error(session, req_id, "Time length exceed max.")
        return
    quote = gw.market.quote(inst.con_id)
    anchor = price_for(what, quote)
    if math.isnan(anchor):
        anchor = quote.mid
    bars = generate_bars(
        inst,
        anchor,
        what_to_show=what,
        bar_seconds=bar_seconds,
        count=count,
        end=min(end, now),
        seed=gw.market.seed,
        tz=gw.timezone,
    )
    tz, tz_name = gw.timezone, gw.config.timezone
    out: list[object] = [
        Out.HISTORICAL_DATA,
        req_id,
        format_bar_time(bars[0].start, 1, 1, tz, tz_name),
        format_bar_time(end, 1, 1, tz, tz_name),
        len(bars),
    ]
    for bar in bars:
        out += [
            format_bar_time(bar.start, bar_seconds, format_date, tz, tz_name),
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            size_text(bar.volume),
            bar.wap,
            bar.count,
        ]
    session.send(*out)
    if keep_up_to_date:
        last = bars[-1]
        builder = BarBuilder(last.close)
        builder.open, builder.high, builder.low = last.open, last.high, last.low
        if last.volume > 0:
            builder.volume, builder.count, builder.pv = (
                last.volume,
                last.count,
                last.wap * last.volume,
            )
        sub = HistoryUpdateSub(
            service,
            session,
            req_id,
            inst,
            what=what,
            bar_seconds=bar_seconds,
            format_date=format_date,
            current_start=last.start,
            builder=builder,
        )
        service.add(sub)
        service.start_task(sub, sub.run())


def _cancel_historical_data(gw: MarketHost, session: ClientLink, fields: list[str]) -> None:
    reader = FieldReader(fields)
    reader.read_int("version")
    req_id = reader.read_int("reqId")
    if not gw.market_data.remove(session, "hist", req_id):
        session.send_error(req_id, 366, f"No historical data query found for ticker id:{req_id}")
