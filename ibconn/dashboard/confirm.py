"""The dashboard's confirmation screen: a question, answered ``y`` (do it) or ``n`` / Esc."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

__all__ = ["ConfirmScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """Ask before an action that changes orders; dismisses with ``True`` only on ``y``."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 72; height: auto; border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmScreen Label { width: 100%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, do it"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        """The question and the keys that answer it."""
        with Vertical():
            yield Label(self.question, id="question")
            yield Label("y: yes, do it    n / Esc: no", id="keys")

    def action_answer(self, yes: bool) -> None:
        """Close the screen with the answer."""
        self.dismiss(yes)
