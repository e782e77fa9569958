"""What the panels show, without a terminal: the model, its rows, stale highlighting."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import connected, until

from ibconn import IBConnector, InvalidInputError
from ibconn.connection.session import ConnectionEvent, ConnectionState
from ibconn.dashboard import create_app
from ibconn.dashboard.model import DashboardModel
from ibconn.dashboard.rows import Styled, stream_rows, summary_lines
from ibconn.sim import SimulatedGateway

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_a_watched_stream_without_data_for_longer_than_stale_after_is_highlighted() -> None:
    now = [100.0]
    model = DashboardModel(clock=lambda: now[0])
    model.stream_opened("quotes AAPL")
    model.received("quotes AAPL", items=3, dropped=2)
    model.stream_opened("fills")
    fresh = stream_rows(model, now=101.0, stale_after=5.0)
    assert fresh["stream:quotes AAPL"] == ("quotes AAPL", "1 s", "3", "2", "reading")
    stale = stream_rows(model, now=106.5, stale_after=5.0)
    assert stale["stream:quotes AAPL"][1] == Styled("6 s", "bold red")
    assert stale["stream:fills"][1] == "-"  # nothing yet: quiet, not stale
    model.stream_ended("quotes AAPL", "no security definition")
    ended = stream_rows(model, now=106.5, stale_after=5.0)["stream:quotes AAPL"]
    assert ended[4] == Styled("no security definition", "red")


def test_only_touched_sections_are_redrawn() -> None:
    model = DashboardModel()
    assert model.take_changed()  # everything, the first time
    assert model.take_changed() == set()
    model.connection(
        ConnectionEvent(
            ConnectionState.RECONNECTING, ConnectionState.CONNECTED, "lost", generation=3
        )
    )
    model.say("done")
    assert model.take_changed() == {"summary", "message"}
    assert model.state is ConnectionState.RECONNECTING and model.generation == 3
    line = summary_lines(model, readonly=True)[0]
    assert isinstance(line, Styled)
    assert line.text.startswith("RECONNECTING  generation 3") and "READ-ONLY" in line.text


async def test_a_stream_that_fails_is_shown_as_ended_and_the_dashboard_goes_on(
    gw: SimulatedGateway,
) -> None:
    connector = await connected(gw)
    try:
        app = create_app(connector, symbols=["NOSUCHSYMBOL", "AAPL"], refresh_hz=10)
        async with app.run_test(size=(150, 48)):
            await until(lambda: app.model.streams.get("quotes NOSUCHSYMBOL") is not None, 5)
            await until(lambda: app.model.streams["quotes NOSUCHSYMBOL"].ended is not None, 5)
            assert "NOSUCHSYMBOL" in str(app.model.streams["quotes NOSUCHSYMBOL"].ended)
            await connector.place_market_order("AAPL", 10, "BUY")
            await until(lambda: len(app.model.fills) == 1, 5)
            assert app.model.streams["fills"].ended is None
    finally:
        await connector.disconnect()


def test_options_out_of_range_are_refused_with_what_is_allowed() -> None:
    connector = IBConnector()
    with pytest.raises(InvalidInputError, match="at most 10"):
        create_app(connector, refresh_hz=50)
    with pytest.raises(InvalidInputError, match="stale_after must be a finite number > 0"):
        create_app(connector, stale_after=0)


def test_the_committed_screenshot_exists_and_the_dashboard_page_shows_it() -> None:
    svg = DOCS / "_static" / "dashboard.svg"
    assert svg.is_file()
    assert svg.read_text(encoding="utf-8").lstrip().startswith("<svg")
    page = (DOCS / "dashboard.md").read_text(encoding="utf-8")
    assert "_static/dashboard.svg" in page
    assert "dashboard" in (DOCS / "index.md").read_text(encoding="utf-8")
