"""A hand-driven bridge for the RemoteConnector tests: streams, buckets and envelopes by hand.

:class:`HandBridge` creates the streams and the snapshot bucket of the wire contract on a
real nats-server and publishes exactly the envelopes, heartbeats, snapshots and raw bytes
a test asks for, so each test controls seqs, epochs and duplicates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats
from ib_async import Stock
from nats.js.api import KeyValueConfig, StreamConfig

from ibconn.bridge import protocol
from ibconn.bridge.nats_link import flush_through
from ibconn.orders.enums import OrderAction, OrderStatus, UpdateKind
from ibconn.orders.models import Fill, OrderSnapshot, OrderUpdate
from ibconn.positions.models import Position, PositionSource

T0 = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)


def fill(exec_id: str, order_ref: str = "ibc-1", quantity: float = 1) -> Fill:
    """A fill of AAPL."""
    return Fill(exec_id, order_ref, 7, 99, "AAPL", 265598, OrderAction.BUY, quantity, 190.0, T0)


def position(quantity: float, account: str = "DU1") -> Position:
    """An AAPL position."""
    return Position(
        account=account,
        con_id=265598,
        symbol="AAPL",
        contract=Stock("AAPL", "SMART", "USD", conId=265598),
        sec_type="STK",
        currency="USD",
        multiplier=1.0,
        quantity=quantity,
        avg_cost=190.0,
        avg_price=190.0,
        market_price=None,
        market_value=None,
        unrealized_pnl=None,
        realized_pnl=0.0,
        commission=0.0,
        time=T0,
        source=PositionSource.FILL,
    )


def order(
    ref: str, status: OrderStatus = OrderStatus.SUBMITTED, filled: float = 0
) -> OrderSnapshot:
    """A working limit order of 10 AAPL."""
    return OrderSnapshot(
        ref, 7, 99, "AAPL", OrderAction.BUY, "LMT", 10, status, filled, 10 - filled,
        None, None, None, (), None, limit_price=190.0,
    )  # fmt: skip


def update(ref: str, status: OrderStatus, filled: float) -> OrderUpdate:
    """A status update of order ``ref``."""
    return OrderUpdate(
        UpdateKind.STATUS, ref, 7, 99, "AAPL", status, filled, 10 - filled, 190.0, time=T0
    )


class HandBridge:
    """The streams and buckets of prefix ``prefix``, and a publisher of hand-made messages."""

    def __init__(self, url: str, prefix: str = "ibconn") -> None:
        self.url = url
        self.names = protocol.Names(prefix)
        self.nc: Any = None
        self.js: Any = None
        self.kv: Any = None

    async def __aenter__(self) -> HandBridge:
        self.nc = await nats.connect(servers=[self.url])
        self.js = self.nc.jetstream()
        for stream in protocol.STREAMS:
            await self.js.add_stream(
                StreamConfig(
                    name=self.names.stream(stream),
                    subjects=self.names.stream_subjects(stream),
                    duplicate_window=3600.0,
                )
            )
        self.kv = await self.js.create_key_value(
            KeyValueConfig(bucket=self.names.snapshot_bucket, history=1)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    def envelope(self, record: object, *, stream: str, epoch: str, seq: int) -> bytes:
        """The envelope of ``record`` as the bridge writes it."""
        return protocol.Envelope.wrap(
            record, stream=stream, epoch=epoch, seq=seq, publish_ts=time.time()
        ).encode()

    async def publish(
        self, record: object, *, epoch: str, seq: int, msg_id: str | None = None
    ) -> None:
        """Publish ``record`` on its stream (fills with the exec id as message id)."""
        stream = {"fill": "fills", "order_update": "orders", "position": "positions"}.get(
            protocol.kind_of(record), "connection"
        )
        headers = None
        if isinstance(record, Fill):
            headers = {"Nats-Msg-Id": msg_id or record.exec_id}
        await self.js.publish(
            self.names.subject_of(record),
            self.envelope(record, stream=stream, epoch=epoch, seq=seq),
            headers=headers,
        )

    async def raw(self, subject: str, payload: bytes) -> None:
        """Publish raw bytes to a stream's subject (malformed messages)."""
        await self.js.publish(subject, payload)

    async def snapshot(self, key: str, epoch: str, seq: int, items: list[Any]) -> None:
        """Write the snapshot of ``key`` (``positions`` or ``orders``) reflecting ``seq``."""
        kind = "position" if key == "positions" else "order_snapshot"
        value = protocol.Snapshot(epoch=epoch, seq={key: seq}, items=tuple(items), kind=kind)
        await self.kv.put(key, value.encode())

    async def heartbeat(self, epoch: str, seq: int, **data: Any) -> None:
        """Publish one heartbeat envelope."""
        body = {
            "v": 1, "kind": "heartbeat", "stream": "heartbeat", "epoch": epoch, "seq": seq,
            "event_ts": time.time(), "publish_ts": time.time(),
            "data": {"state": "connected", "generation": 1, "farms": {}, "server_version": 178,
                     "read_only": False, "last_seq": {}, "data_age": {}, "dropped": {},
                     "started": time.time(), **data},
        }  # fmt: skip
        await self.nc.publish(self.names.heartbeat, json.dumps(body).encode())
        await self.nc.flush()

    async def respond(
        self, command: str, answer: Callable[[dict[str, Any]], Awaitable[bytes | None]]
    ) -> list[dict[str, Any]]:
        """Answer ``command`` requests with ``answer(request)`` (``None``: no reply);
        returns the list the requests are recorded in."""
        seen: list[dict[str, Any]] = []

        async def handle(msg: Any) -> None:
            request = json.loads(msg.data)
            seen.append(request)
            reply = await answer(request)
            if reply is not None:
                await msg.respond(reply)

        await self.nc.subscribe(self.names.command(command), cb=handle)
        await flush_through(self.nc)
        return seen
