"""The Textual app of ``ibconn dashboard``: panels drawn from a model by a timer, and the keys.

Stream consumers (:mod:`ibconn.dashboard.feeds`) only write the model; a timer running
``refresh_hz`` times a second (10 at most) takes ``connector.status()`` once, and
redraws only the cells whose text changed. However fast the feed, the screen costs at
most ``refresh_hz`` redraws a second. The keys that change orders ask first
(:class:`~ibconn.dashboard.confirm.ConfirmScreen`) and are refused, with a message, when
the settings say read-only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, Label, Static
from textual.widgets.data_table import ColumnKey

from ibconn.dashboard import rows
from ibconn.dashboard.confirm import ConfirmScreen
from ibconn.dashboard.feeds import DashboardFeeds
from ibconn.dashboard.model import DashboardModel
from ibconn.dashboard.ports import DashboardSource
from ibconn.dashboard.rows import Cell, Row, Styled
from ibconn.errors import IBConnError, InvalidInputError

__all__ = ["MAX_REFRESH_HZ", "DashboardApp"]

MAX_REFRESH_HZ = 10.0
"""The most redraws a second the dashboard allows."""

KILL_REASON = "engaged from the dashboard"

TABLES: Mapping[str, tuple[str, ...]] = {
    "positions": rows.POSITION_COLUMNS,
    "orders": rows.ORDER_COLUMNS,
    "fills": rows.FILL_COLUMNS,
    "streams": rows.STREAM_COLUMNS,
    "alerts": rows.ALERT_COLUMNS,
}


def _cell(cell: Cell) -> str | Text:
    return Text(cell.text, style=cell.style) if isinstance(cell, Styled) else cell


class DashboardApp(App[None]):
    """A live view of one connector: connection, positions, orders, fills, streams, alerts.

    ``symbols`` are watched with ``connector.quotes()`` (their age and drops show in
    the streams panel). ``stale_after`` seconds without data highlight a stream;
    ``latency_interval`` is how often ``server_time()`` is timed (the heartbeat's latency).
    """

    TITLE = "ibconn dashboard"
    CSS = """
    #summary { height: auto; padding: 0 1; }
    .title { text-style: bold; padding: 0 1; background: $boost; width: 100%; }
    DataTable { height: 1fr; }
    #positions, #orders { height: 1fr; }
    #middle { height: 1fr; }
    #middle > Vertical { width: 1fr; }
    #alerts { height: 1fr; }
    #message { height: 1; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_order", "Cancel order"),
        Binding("a", "cancel_all", "Cancel all"),
        Binding("k", "kill_switch", "Kill switch"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        source: DashboardSource,
        *,
        symbols: Sequence[str] = (),
        refresh_hz: float = 4.0,
        stale_after: float = 5.0,
        latency_interval: float = 5.0,
        action_timeout: float = 10.0,
    ) -> None:
        for name, value in (
            ("stale_after", stale_after),
            ("latency_interval", latency_interval),
            ("action_timeout", action_timeout),
        ):
            if not (math.isfinite(value) and value > 0):
                raise InvalidInputError(f"{name} must be a finite number > 0, not {value!r}")
        if not (math.isfinite(refresh_hz) and 0 < refresh_hz <= MAX_REFRESH_HZ):
            raise InvalidInputError(
                f"refresh_hz must be > 0 and at most {MAX_REFRESH_HZ:g}, not {refresh_hz!r}"
            )
        super().__init__()
        self.source = source
        self.model = DashboardModel()
        self.feeds = DashboardFeeds(
            source, self.model, symbols=symbols, latency_interval=latency_interval
        )
        self.refresh_hz = refresh_hz
        self.stale_after = stale_after
        self.action_timeout = action_timeout
        self.renders = 0
        """Timer ticks that changed something on the screen."""
        self._shown: dict[str, dict[str, Row]] = {name: {} for name in TABLES}
        self._summary: list[Cell] = []
        self._tables: dict[str, DataTable[Any]] = {}
        self._statics: dict[str, Static] = {}

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        """The summary lines, the five tables, the message line and the keys."""
        yield Static(id="summary")
        yield Label("Positions", classes="title")
        yield DataTable(id="positions", cursor_type="row")
        yield Label(
            "Working orders  (c: cancel the selected order, a: cancel all)", classes="title"
        )
        yield DataTable(id="orders", cursor_type="row")
        with Horizontal(id="middle"):
            with Vertical():
                yield Label("Fills", classes="title")
                yield DataTable(id="fills", cursor_type="none")
            with Vertical():
                yield Label("Streams", classes="title")
                yield DataTable(id="streams", cursor_type="none")
        yield Label("Alerts", classes="title")
        yield DataTable(id="alerts", cursor_type="none")
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        """Add the columns, start the consumers and the render timer."""
        # the widgets of the main screen, kept: a confirmation screen may be on top of it
        self._tables = {name: self.query_one(f"#{name}", DataTable) for name in TABLES}
        self._statics = {
            name: self.query_one(f"#{name}", Static) for name in ("summary", "message")
        }
        for name, columns in TABLES.items():
            table = self._table(name)
            for column in columns:
                table.add_column(column, key=column)
        self.feeds.start()
        self.render_changes()
        self.set_interval(1 / self.refresh_hz, self.render_changes, name="render")
        self._table("orders").focus()

    async def on_unmount(self) -> None:
        """Stop the consumers (their streams are closed)."""
        await self.feeds.aclose()

    # -- rendering ------------------------------------------------------------------------

    @property
    def readonly(self) -> bool:
        """Whether the settings refuse orders (``readonly`` or ``risk.read_only``)."""
        settings = self.source.settings
        return settings.readonly or settings.risk.read_only

    def render_changes(self) -> None:
        """One tick of the timer: read ``status()`` and redraw the changed cells."""
        model = self.model
        model.set_status(self.source.status())
        changed = model.take_changed()
        drawn = False
        if "summary" in changed:
            lines = rows.summary_lines(model, readonly=self.readonly)
            if lines != self._summary:
                # a new layout only when the summary's height changes: a repaint is cheaper
                relayout = len(lines) != len(self._summary)
                self._summary = lines
                text = Text("\n").join(
                    Text(line.text, style=line.style) if isinstance(line, Styled) else Text(line)
                    for line in lines
                )
                self._statics["summary"].update(text, layout=relayout)
                drawn = True
        now = time.monotonic()
        builders: dict[str, Callable[[], dict[str, Row]]] = {
            "positions": lambda: rows.position_rows(model),
            "orders": lambda: rows.order_rows(model),
            "fills": lambda: rows.fill_rows(model),
            "streams": lambda: rows.stream_rows(model, now, self.stale_after),
            "alerts": lambda: rows.alert_rows(model),
        }
        for name, build in builders.items():
            if name in changed:
                drawn = self._sync(name, build()) or drawn
        if "message" in changed:
            self._statics["message"].update(Text(model.message, style="bold"), layout=False)
            drawn = True
        if drawn:
            self.renders += 1

    def _table(self, name: str) -> DataTable[Any]:
        return self._tables[name]

    def _sync(self, name: str, new: dict[str, Row]) -> bool:
        """Bring table ``name`` to ``new``: remove, add and update only what differs."""
        old = self._shown[name]
        if old == new:
            return False
        table = self._table(name)
        columns = TABLES[name]
        for key in old.keys() - new.keys():
            table.remove_row(key)
        for key, row in new.items():
            before = old.get(key)
            if before is None:
                table.add_row(*map(_cell, row), key=key)
                continue
            for column, was, cell in zip(columns, before, row, strict=True):
                if was != cell:
                    # widening re-measures the whole table: only when the text needs it
                    text = cell.text if isinstance(cell, Styled) else cell
                    wider = len(text) > table.columns[ColumnKey(column)].content_width
                    table.update_cell(key, column, _cell(cell), update_width=wider)
        self._shown[name] = new
        return True

    # -- keys -----------------------------------------------------------------------------

    def selected_order(self) -> str | None:
        """The order ref of the working order under the cursor (``None``: no working order)."""
        table = self._table("orders")
        if table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), table.row_count - 1)
        return table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value

    def action_cancel_order(self) -> None:
        """``c``: cancel the selected working order, after a confirmation."""
        if self._refused("cancel an order"):
            return
        ref = self.selected_order()
        if ref is None:
            self._say("no working order to cancel", error=True)
            return
        self._ask(f"Cancel order {ref}?", f"cancel {ref}", lambda: self._cancel(ref))

    def action_cancel_all(self) -> None:
        """``a``: cancel every working order of this connector, after a confirmation."""
        if self._refused("cancel all orders"):
            return
        count = len(self._shown["orders"])
        self._ask(
            f"Cancel all {count} working order(s) of this connector?",
            "cancel all",
            self._cancel_all,
        )

    def action_kill_switch(self) -> None:
        """``k``: engage the kill switch, or release it when engaged, after a confirmation."""
        if self._refused("flip the kill switch"):
            return
        if self.source.status(recent_alerts=0).kill_switch.engaged:
            self._ask("Release the kill switch?", "release the kill switch", self._release)
        else:
            self._ask(
                "Engage the kill switch: cancel every working order and refuse opening orders?",
                "engage the kill switch",
                self._engage,
            )

    def _refused(self, what: str) -> bool:
        if not self.readonly:
            return False
        self._say(f"refused: cannot {what}: the settings say read-only", error=True)
        return True

    def _say(self, message: str, *, error: bool = False) -> None:
        self.model.say(message)
        self.notify(message, severity="error" if error else "information")

    def _ask(self, question: str, what: str, act: Callable[[], Awaitable[str]]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._act(what, act), group="actions", exit_on_error=False)
            else:
                self._say(f"{what}: not done")

        self.push_screen(ConfirmScreen(question), answered)

    async def _act(self, what: str, act: Callable[[], Awaitable[str]]) -> None:
        self._say(f"{what}: sent ...")
        try:
            result = await act()
        except IBConnError as exc:
            self._say(f"{what} failed: {' '.join(str(exc).split())}", error=True)
        else:
            self._say(result)
        self.render_changes()

    async def _cancel(self, ref: str) -> str:
        final = await self.source.cancel_order(ref, timeout=self.action_timeout)
        return f"{ref}: {final.status.value}, filled {final.filled:g} of {final.quantity:g}"

    async def _cancel_all(self) -> str:
        finals = await self.source.cancel_all_orders(timeout=self.action_timeout)
        return f"cancel all: {len(finals)} order(s) done"

    async def _engage(self) -> str:
        state = await self.source.kill_switch(KILL_REASON, timeout=self.action_timeout)
        return f"kill switch engaged: {state.cancels_sent} cancel(s) sent"

    async def _release(self) -> str:
        self.source.reset_kill_switch()
        return "kill switch released"
