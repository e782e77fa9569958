"""Pure-Python variants of the receive path's tapped loop, measured by receive_cost.py.

Experiments, not ibconn code: docs/benchmarks.md ("Per-message work") records what they
saved and why neither was adopted.
"""

from __future__ import annotations

from typing import Any

from ibconn.wire.receive import FastReceiver, _unpack_from
from ibconn.wire.tick_decoding import MKT, SAFE_MESSAGE_IDS, TickTap


class _CountersOnce(FastReceiver):
    """``_ready_ascii_tapped`` writing ``_numMsgRecv`` and ``_pos`` once per run of
    tapped messages (before ``interpret`` and at the end) instead of per message."""

    __slots__ = ()

    def _ready_ascii_tapped(
        self, client: Any, buf: bytes | bytearray, pos: int, n: int, tap: TickTap
    ) -> bool:
        text = (buf if n == len(buf) else buf[:n]).decode("ascii")
        interpret = client.decoder.interpret
        price, size, by_tick = tap.price, tap.size, tap.by_tick
        taken = 0
        try:
            while n - pos > 4:
                end = pos + 4 + _unpack_from(buf, pos)[0]
                if end > n:
                    break
                fields = text[pos + 4 : end].split("\0")
                msg_id = fields[0]
                del fields[-1]
                pos = end
                if msg_id == "1":
                    if price(fields):
                        taken += 1
                        continue
                elif msg_id == "2":
                    if size(fields):
                        taken += 1
                        continue
                elif msg_id == "99":
                    if by_tick(fields):
                        taken += 1
                        continue
                elif tap.touched and msg_id not in SAFE_MESSAGE_IDS:
                    tap.flush()
                self._pos = end
                client._numMsgRecv += taken + 1
                taken = 0
                interpret(fields)
                if client._data is not buf:
                    return False
                if self._yield:
                    return True
            return True
        finally:
            if taken:
                self._pos = pos
                client._numMsgRecv += taken


class _NoTickerWrites(TickTap):
    """tickPrice without the ticker's state: a ceiling, its tickers are wrong."""

    __slots__ = ()

    def price(self, fields: list[str]) -> bool:
        if len(fields) != 7:
            return False
        line = self.lines.get(fields[2])
        if line is None or line.kind != MKT or not fields[4]:
            return False
        try:
            tick_type = int(fields[3])
            price = float(fields[4])
            size = float(fields[5] or 0)
        except ValueError:
            return False
        if price or size:
            line.items += (None, tick_type, price, size)
        if not line.touched:
            self._touch(line)
        return True


def counters_once(receiver: Any) -> None:
    receiver.__class__ = _CountersOnce


def no_ticker_writes(receiver: Any) -> None:
    receiver.__class__ = _CountersOnce
    receiver.tap.__class__ = _NoTickerWrites
