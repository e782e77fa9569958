"""ibconn.sim: a simulated TWS / IB Gateway that speaks the real socket protocol."""

from __future__ import annotations

from ibconn.sim.instruments import DEFAULT_INSTRUMENTS, Instrument

__all__ = ["DEFAULT_INSTRUMENTS", "Instrument"]
