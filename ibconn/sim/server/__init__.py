"""The simulated gateway's server: TCP listener, client sessions, dispatch, fault
controls, the control port, message logs, the state file and the command line."""

from __future__ import annotations

__all__: list[str] = []
