"""The order journal: every order event, the kill switch and the exit plans, kept in SQLite.

See ``docs/journal.md``. :class:`JournalReader` reads a journal file;
:class:`OrderJournal` is the writing side a connector builds for itself.
"""

from __future__ import annotations

from ibconn.journal.journal import OrderJournal, default_journal_path
from ibconn.journal.reader import JournalEntry, JournalReader

__all__ = ["JournalEntry", "JournalReader", "OrderJournal", "default_journal_path"]
