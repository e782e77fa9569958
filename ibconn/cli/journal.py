"""``ibconn journal``: list and export the order journal (table, CSV or JSON).

The journal file comes from the same settings sources as a connector's:
``--journal PATH``, else ``journal_path`` (``--config FILE``, ``IBCONN_*``), else
the default file of the gateway at ``--host`` / ``--port``. Bad input exits 2
with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ibconn.config.settings import ConnectorSettings
from ibconn.errors import IBConnError
from ibconn.journal import JournalEntry, JournalReader, default_journal_path
from ibconn.orders.events import OrderEventKind

__all__ = ["add_journal_parser", "parse_since", "run_journal"]

_FORMATS = ("table", "csv", "json")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Usage(Exception):
    """Bad input: one line for stderr, exit status 2."""


def add_journal_parser(subparsers: Any) -> None:
    """Add ``journal`` to the ``ibconn`` command's subparsers."""
    parser = subparsers.add_parser(
        "journal",
        help="list and export the order journal",
        description="List the order journal's events (every order operation, the kill "
        "switch), filtered, as a table, CSV or JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = parser.add_argument_group("which journal")
    where.add_argument(
        "--journal",
        metavar="PATH",
        help="the journal file (default: journal_path from the settings, else the default "
        "file of --host/--port)",
    )
    where.add_argument("--config", metavar="FILE", help="a YAML settings file (ib_connector:)")
    where.add_argument("--host", help="the gateway's host (default: from the settings)")
    where.add_argument("--port", help="the gateway's port (default: from the settings)")
    which = parser.add_argument_group("which events")
    which.add_argument(
        "--since",
        metavar="TIME",
        help="events at or after TIME: ISO 8601 (2026-12-03, 2026-12-03T14:30, UTC unless "
        "it has an offset) or a time back from now (90s, 30m, 2h, 1d)",
    )
    which.add_argument("--order-ref", metavar="REF", help="the events of one order")
    which.add_argument(
        "--kind",
        action="append",
        metavar="KIND",
        help="only this kind (repeatable): " + ", ".join(kind.value for kind in OrderEventKind),
    )
    which.add_argument("--symbol", help="the events of one symbol")
    which.add_argument("--limit", metavar="N", help="only the last N events")
    out = parser.add_argument_group("output")
    out.add_argument("--format", default="table", help="table, csv or json")
    out.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(func=run_journal)


def run_journal(args: argparse.Namespace) -> int:
    """Run ``ibconn journal``; returns the exit status (2 on bad input)."""
    try:
        return _run(args)
    except (_Usage, IBConnError) as exc:
        print(f"ibconn journal: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.format not in _FORMATS:
        raise _Usage(f"--format {args.format!r} is not one of: {', '.join(_FORMATS)}")
    kinds = [_kind(kind) for kind in args.kind or ()]
    since = parse_since(args.since) if args.since is not None else None
    limit = _limit(args.limit) if args.limit is not None else None
    path = _journal_path(args)
    with JournalReader(path) as reader:
        entries = reader.iter_events(
            since=since, order_ref=args.order_ref, kinds=kinds, symbol=args.symbol, limit=limit
        )
        if args.output is None:
            _write(entries, args.format, sys.stdout)
            return 0
        try:
            with Path(args.output).open("w", encoding="utf-8", newline="") as target:
                _write(entries, args.format, target)
        except OSError as exc:
            raise _Usage(f"cannot write --output {args.output}: {exc.strerror or exc}") from None
    return 0


def _journal_path(args: argparse.Namespace) -> Path:
    if args.journal is not None:
        return Path(args.journal).expanduser()
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = (
        ConnectorSettings.from_yaml(args.config, **overrides)
        if args.config is not None
        else ConnectorSettings(**overrides)
    )
    return settings.journal_path or default_journal_path(settings.host, settings.port)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO 8601 date or time (UTC unless it has an offset), or a duration
    back from ``now`` (``90s``, ``30m``, ``2h``, ``1d``)."""
    value = text.strip()
    match = _DURATION.match(value.lower())
    if match:
        back = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
        return (now or datetime.now(UTC)) - back
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Usage(
            f"--since {text!r} is not a time; allowed: ISO 8601 (2026-12-03T14:30) or a time "
            "back from now (90s, 30m, 2h, 1d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _kind(text: str) -> OrderEventKind:
    try:
        return OrderEventKind(text.strip().lower())
    except ValueError:
        allowed = ", ".join(kind.value for kind in OrderEventKind)
        raise _Usage(f"--kind {text!r} is not a kind of event; allowed: {allowed}") from None


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = -1
    if limit < 1:
        raise _Usage(f"--limit {text!r} is not a whole number >= 1")
    return limit


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- output --------------------------------------------------------------------------------

_TABLE = (
    ("time", 26), ("kind", 11), ("order_ref", 22), ("symbol", 8), ("action", 6),
    ("quantity", 9), ("order_type", 8), ("price", 10), ("status", 16), ("filled", 8),
)  # fmt: skip


def _write(entries: Iterable[JournalEntry], fmt: str, target: TextIO) -> None:
    if fmt == "json":
        target.write("[")
        for number, entry in enumerate(entries):
            target.write(("," if number else "") + "\n" + json.dumps(entry.as_dict()))
        target.write("\n]\n")
    elif fmt == "csv":
        writer: Any = None
        for entry in entries:
            row = entry.as_dict()
            if writer is None:
                writer = csv.DictWriter(target, fieldnames=list(row))
                writer.writeheader()
            row["detail"] = json.dumps(row["detail"])
            writer.writerow(row)
        if writer is None:
            csv.writer(target).writerow(["id", "time", "kind"])  # an empty export has a header
    else:
        target.write(" ".join(name.upper().ljust(width) for name, width in _TABLE) + " INFO\n")
        for entry in entries:
            target.write(_table_row(entry) + "\n")


def _table_row(entry: JournalEntry) -> str:
    price = entry.fill_price if entry.fill_price is not None else entry.limit_price
    if price is None:
        price = entry.stop_price
    cells = {
        "time": entry.time.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "kind": entry.kind.value,
        "order_ref": entry.order_ref or "",
        "symbol": entry.symbol or "",
        "action": entry.action or "",
        "quantity": _number(entry.fill_quantity if entry.fill_quantity else entry.quantity),
        "order_type": entry.order_type or "",
        "price": _number(price),
        "status": entry.status or "",
        "filled": _number(entry.filled),
    }
    line = " ".join(cells[name].ljust(width) for name, width in _TABLE)
    return line + " " + _info(entry)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _info(entry: JournalEntry) -> str:
    if entry.error_code is not None:
        return f"{entry.error_code} {entry.error_text or ''}".strip()
    detail = entry.detail
    if entry.kind is OrderEventKind.KILL_SWITCH:
        state = "engaged" if detail.get("engaged") else "released"
        return f"{state}: {detail.get('reason') or detail.get('was') or ''}".rstrip(": ")
    if entry.kind is OrderEventKind.REFUSED:
        return f"{detail.get('error_type')}: {detail.get('message')}"
    if entry.kind is OrderEventKind.MODIFY:
        return json.dumps(detail.get("changes", {}))
    if entry.exec_id is not None:
        return f"exec {entry.exec_id}" + (
            f" commission {entry.commission:g}" if entry.commission is not None else ""
        )
    tag = detail.get("tag")
    return f"tag {tag}" if tag else ""
