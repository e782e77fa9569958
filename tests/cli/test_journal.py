"""``ibconn journal``: filters, the three formats, the settings sources, and bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ibconn.__main__ import main
from ibconn.cli.journal import parse_since
from ibconn.journal import default_journal_path
from ibconn.journal.writer import JournalWriter
from ibconn.orders.events import OrderEvent, OrderEventKind
from ibconn.orders.models import OrderError

OLD = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
NEW = datetime(2026, 1, 3, 10, 0, tzinfo=UTC)


def _journal(path: Path) -> Path:
    writer = JournalWriter(path, run_id="ibcrun", client_id=7, flush_interval=0.01)
    writer.start().result(timeout=10)
    for event in (
        OrderEvent(OrderEventKind.PLACE, "r-1", 1, symbol="AAPL", action="BUY", quantity=5,
                   order_type="LMT", limit_price=150.0, time=OLD, detail={"tag": "t"}),
        OrderEvent(OrderEventKind.REJECT, "r-1", 1, symbol="AAPL", status="rejected",
                   error=OrderError(201, "no margin"), time=OLD),
        OrderEvent(OrderEventKind.PLACE, "r-2", 2, symbol="msft", action="SELL", quantity=1,
                   order_type="MKT", time=NEW),
        OrderEvent(OrderEventKind.KILL_SWITCH, time=NEW,
                   detail={"engaged": True, "reason": "halt"}),
    ):  # fmt: skip
        writer.submit(event)
    writer.flush().result(timeout=10)
    writer.stop(10)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["journal", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_lists_every_event_with_its_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _journal(tmp_path / "j.sqlite3")
    status, out, _ = _run(capsys, "--journal", str(path), "--format", "json")
    assert status == 0
    events = json.loads(out)
    assert [e["kind"] for e in events] == ["place", "reject", "place", "kill_switch"]
    assert events[0]["limit_price"] == 150.0 and events[0]["detail"] == {"tag": "t"}
    assert events[1]["error_code"] == 201 and events[1]["error_text"] == "no margin"
    assert {e["client_id"] for e in events} == {7} and events[0]["run_id"] == "ibcrun"


def test_filters_select_by_order_ref_kind_symbol_since_and_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_journal(tmp_path / "j.sqlite3"))

    def refs(*args: str) -> list[tuple[str, str | None]]:
        status, out, err = _run(capsys, "--journal", path, "--format", "json", *args)
        assert status == 0, err
        return [(e["kind"], e["order_ref"]) for e in json.loads(out)]

    assert refs("--order-ref", "r-1") == [("place", "r-1"), ("reject", "r-1")]
    assert refs("--kind", "place") == [("place", "r-1"), ("place", "r-2")]
    assert refs("--kind", "REJECT", "--kind", "kill_switch") == [
        ("reject", "r-1"), ("kill_switch", None),
    ]  # fmt: skip
    assert refs("--symbol", "MSFT") == [("place", "r-2")]
    assert refs("--since", "2026-01-03") == [("place", "r-2"), ("kill_switch", None)]
    assert refs("--limit", "1") == [("kill_switch", None)]


def test_csv_and_table_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(_journal(tmp_path / "j.sqlite3"))
    status, out, _ = _run(capsys, "--journal", path, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [r["kind"] for r in rows] == ["place", "reject", "place", "kill_switch"]
    assert json.loads(rows[3]["detail"]) == {"engaged": True, "reason": "halt"}
    status, out, _ = _run(capsys, "--journal", path)  # table is the default
    lines = out.splitlines()
    assert status == 0 and lines[0].startswith("TIME") and len(lines) == 5
    assert "201 no margin" in lines[2] and "engaged: halt" in lines[4]


def test_output_writes_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(_journal(tmp_path / "j.sqlite3"))
    target = tmp_path / "out.json"
    status, out, _ = _run(capsys, "--journal", path, "--format", "json", "--output", str(target))
    assert status == 0 and out == ""
    assert len(json.loads(target.read_text())) == 4


def test_the_journal_path_comes_from_the_settings_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _journal(default_journal_path("127.0.0.1", 4555))
    status, out, _ = _run(capsys, "--port", "4555", "--format", "json")
    assert status == 0 and len(json.loads(out)) == 4
    elsewhere = _journal(tmp_path / "elsewhere.sqlite3")
    monkeypatch.setenv("IBCONN_JOURNAL_PATH", str(elsewhere))
    status, out, _ = _run(capsys, "--format", "json", "--kind", "reject")
    assert status == 0 and len(json.loads(out)) == 1
    monkeypatch.delenv("IBCONN_JOURNAL_PATH")
    config = tmp_path / "ibconn.yaml"
    config.write_text(f"ib_connector:\n  journal_path: {elsewhere}\n")
    status, out, _ = _run(capsys, "--config", str(config), "--format", "json", "--limit", "2")
    assert status == 0 and len(json.loads(out)) == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not a time"),
        (["--kind", "teleport"], "--kind 'teleport' is not a kind of event"),
        (["--format", "xml"], "--format 'xml' is not one of"),
        (["--limit", "0"], "--limit '0' is not a whole number"),
        (["--journal", "/nonexistent/j.sqlite3"], "no order journal at"),
        (["--port", "70000"], "port"),
        (["--config", "/nonexistent.yaml"], "nonexistent.yaml"),
        (["--output", "/nonexistent/dir/out.json"], "cannot write --output"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    journal = ["--journal", str(_journal(tmp_path / "j.sqlite3"))]
    given = args if any(a in args for a in ("--journal", "--port", "--config")) else journal + args
    status, out, err = _run(capsys, *given)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ibconn journal: error: ") and says in err


def test_a_file_that_is_not_a_journal_exits_2_without_a_traceback(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-journal"
    bogus.write_text("hello")
    done = subprocess.run(
        [sys.executable, "-m", "ibconn", "journal", "--journal", str(bogus)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "is not an order journal" in done.stderr


def test_since_accepts_times_and_durations_back_from_now() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("2026-05-01T10:00") == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2026-05-01T10:00+02:00").utcoffset() == timedelta(hours=2)
