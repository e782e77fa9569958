"""``ibconn quotes``, ``ibconn bars`` and ``ibconn history``: market data from the shell.

``quotes`` and ``bars`` are live: they print each item as it arrives (a
line of JSON each with ``--json``) until Ctrl-C, ``--count`` items or
``--seconds``. ``history`` prints the historical bars of one request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from ibconn.cli.common import (
    CliError,
    add_command,
    connected,
    load_settings,
    positive_float,
    positive_int,
    run,
)
from ibconn.cli.output import cell, print_json, print_table
from ibconn.connector import IBConnector
from ibconn.core.tasks import cancel_all
from ibconn.market_data.bars import HISTORICAL_BAR_SIZES, STREAM_BAR_SIZES
from ibconn.market_data.models import Bar, Quote

__all__ = ["add_market_parsers"]

WHAT_TO_SHOW = (
    "TRADES",
    "MIDPOINT",
    "BID",
    "ASK",
    "BID_ASK",
    "ADJUSTED_LAST",
    "HISTORICAL_VOLATILITY",
)
"""The ``--what`` values of ``history`` (TWS's whatToShow)."""


def add_market_parsers(subparsers: Any) -> None:
    """Add ``ibconn quotes``, ``ibconn bars`` and ``ibconn history``."""
    quotes = add_command(
        subparsers,
        "quotes",
        "live quotes of one or more symbols",
        "Print each quote (bid, ask, sizes) of SYMBOL... as it arrives, until Ctrl-C, "
        "--count quotes or --seconds.",
        lambda args: run(args, lambda: _quotes(args)),
    )
    quotes.add_argument("symbols", nargs="+", metavar="SYMBOL", help="US stock symbols (SMART)")
    _add_stop_options(quotes, "quotes")
    bars = add_command(
        subparsers,
        "bars",
        "live bars of a symbol",
        "Print each complete bar of SYMBOL as it closes, until Ctrl-C, --count bars or --seconds.",
        lambda args: run(args, lambda: _bars(args)),
    )
    bars.add_argument("symbol", metavar="SYMBOL", help="a US stock symbol (SMART)")
    bars.add_argument(
        "--bar-size",
        default="5 secs",
        choices=list(STREAM_BAR_SIZES),
        metavar="SIZE",
        help=f"bar size: {', '.join(STREAM_BAR_SIZES)}",
    )
    _add_stop_options(bars, "bars")
    history = add_command(
        subparsers,
        "history",
        "historical bars of a symbol",
        "Print the historical bars of SYMBOL, oldest first (fetched in paced chunks when "
        "the duration is longer than one request allows).",
        lambda args: run(args, lambda: _history(args)),
    )
    history.add_argument("symbol", metavar="SYMBOL", help="a US stock symbol (SMART)")
    history.add_argument(
        "--duration", default="1 D", help="how far back, TWS's 'N S|D|W|M|Y' ('2 D', '1 W')"
    )
    history.add_argument(
        "--bar-size",
        default="5 mins",
        choices=list(HISTORICAL_BAR_SIZES),
        metavar="SIZE",
        help=f"bar size: {', '.join(HISTORICAL_BAR_SIZES)}",
    )
    history.add_argument(
        "--what", default="TRADES", type=str.upper, choices=WHAT_TO_SHOW, help="TWS's whatToShow"
    )
    history.add_argument(
        "--rth", action="store_true", help="regular trading hours only (default: all hours)"
    )


def _add_stop_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--count",
        type=positive_int("count"),
        default=None,
        metavar="N",
        help=f"stop after N {what} (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--seconds",
        type=positive_float("seconds"),
        default=None,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C)",
    )


# -- live streams ----------------------------------------------------------------------------


async def _live(args: argparse.Namespace, items: AsyncIterator[Any], show: Any) -> int:
    """Print ``items`` until ``--count`` or ``--seconds`` (or Ctrl-C)."""
    shown = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.seconds):
            async for item in items:
                show(item)
                shown += 1
                if args.count is not None and shown >= args.count:
                    break
    return 0


async def _merged(streams: Sequence[Any]) -> AsyncGenerator[Any, None]:
    """The items of several opened streams, as they arrive; an error in one ends all."""
    queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

    async def pump(stream: Any) -> None:
        try:
            async for item in stream:
                await queue.put((item, None))
        except Exception as exc:
            await queue.put((None, exc))

    tasks = [asyncio.ensure_future(pump(stream)) for stream in streams]
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            yield item
    finally:
        await cancel_all(tasks)


async def _resolve_all(connector: IBConnector, symbols: Sequence[str]) -> None:
    """Resolve every symbol first: an unknown one is bad input (exit 2) before any output."""
    for symbol in symbols:
        await connector.resolve(symbol)


async def _quotes(args: argparse.Namespace) -> int:
    if len(set(args.symbols)) != len(args.symbols):
        raise CliError(f"a symbol is given twice: {' '.join(args.symbols)}")
    async with connected(load_settings(args, readonly=True)) as connector:
        await _resolve_all(connector, args.symbols)
        async with contextlib.AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(connector.quotes(symbol)) for symbol in args.symbols
            ]
            if not args.json:
                print(_quote_line(None), flush=True)
            show = (
                (lambda q: print_json(q, lines=True))
                if args.json
                else (lambda q: print(_quote_line(q), flush=True))
            )
            items = _merged(streams)
            try:
                return await _live(args, _only(items, Quote), show)
            finally:
                await items.aclose()


async def _only(items: AsyncIterator[Any], kind: type) -> AsyncIterator[Any]:
    async for item in items:
        if isinstance(item, kind):
            yield item


def _quote_line(quote: Quote | None) -> str:
    if quote is None:
        return f"{'time':<15} {'symbol':<8} {'bid':>10} {'bid size':>9} {'ask':>10} {'ask size':>9}"
    flags = " delayed" if quote.delayed else ""
    flags += " crossed" if quote.crossed else ""
    return (
        f"{quote.time:%H:%M:%S.%f}"[:15].ljust(15)
        + f" {quote.symbol:<8} {cell(quote.bid):>10} {cell(quote.bid_size):>9} "
        f"{cell(quote.ask):>10} {cell(quote.ask_size):>9}{flags}"
    )


async def _bars(args: argparse.Namespace) -> int:
    async with connected(load_settings(args, readonly=True)) as connector:
        await _resolve_all(connector, [args.symbol])
        if not args.json:
            print(_bar_line(None), flush=True)
        show = (
            (lambda b: print_json(b, lines=True))
            if args.json
            else (lambda b: print(_bar_line(b), flush=True))
        )
        async with connector.bars(args.symbol, args.bar_size) as bars:
            return await _live(args, _only(bars, Bar), show)


def _bar_line(bar: Bar | None) -> str:
    if bar is None:
        return (
            f"{'start':<19} {'symbol':<8} {'open':>10} {'high':>10} {'low':>10} {'close':>10} "
            f"{'volume':>10}"
        )
    return (
        f"{bar.start:%Y-%m-%d %H:%M:%S} {bar.symbol:<8} {cell(bar.open):>10} "
        f"{cell(bar.high):>10} {cell(bar.low):>10} {cell(bar.close):>10} {cell(bar.volume):>10}"
    )


async def _history(args: argparse.Namespace) -> int:
    async with connected(load_settings(args, readonly=True)) as connector:
        bars = await connector.historical_bars(
            args.symbol,
            duration=args.duration,
            bar_size=args.bar_size,
            what=args.what,
            use_rth=args.rth,
        )
    if args.json:
        print_json(bars)
    else:
        print_table(
            ("start", "open", "high", "low", "close", "volume", "wap", "count"),
            [(b.start, b.open, b.high, b.low, b.close, b.volume, b.wap, b.count) for b in bars],
        )
    return 0
