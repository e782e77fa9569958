"""`RemoteConnector`: the connector's async API in another process, through the bridge over NATS.

::

    async with RemoteConnector(url="nats://127.0.0.1:4222", name="strategy-1") as remote:
        async for fill in remote.fills():
            ...

Streams are bounded iterators like the local ones (the same
:class:`~ibconn.core.streams.Subscription`); orders are placed through the bridge
with an idempotency key; ``positions()`` and ``open_orders()`` read the bridge's
snapshot kept in step with its streams. See ``docs/bridge.md``, "RemoteConnector".
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ibconn.bridge import protocol
from ibconn.bridge.remote_commands import CommandClient, NoBridge
from ibconn.bridge.remote_feeds import RemoteFeeds
from ibconn.bridge.remote_heartbeat import BridgeLost, BridgeRestored, BridgeState
from ibconn.bridge.remote_orders import RemoteOrderMethods
from ibconn.connection.session import ConnectionEvent
from ibconn.core.arguments import capacity_arg, timeout_arg
from ibconn.core.streams import Subscription
from ibconn.errors import ConnectError, InvalidInputError, MissingDependencyError, NotConnectedError
from ibconn.market_data.models import Bar, Quote, Trade
from ibconn.orders.models import Fill, OrderSnapshot, OrderUpdate
from ibconn.positions.models import Position

__all__ = ["RemoteConnector", "RemoteStatistics"]

log = logging.getLogger("ibconn.bridge.remote")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class RemoteStatistics:
    """What a remote received and skipped: fills delivered, duplicates dropped and late
    commissions delivered (``fill_commissions``), resyncs
    of orders and positions, messages skipped by reason, commands sent."""

    fills_delivered: int
    fill_duplicates: int
    fill_commissions: int
    resyncs: Mapping[str, int]
    skipped: Mapping[str, int]
    commands: int


def _import_nats() -> Any:
    try:
        return importlib.import_module("nats")
    except ImportError as exc:
        raise MissingDependencyError(
            "RemoteConnector needs nats-py: pip install 'ibconn[nats]'",
            package="nats",
            extra="nats",
        ) from exc


class RemoteConnector(RemoteOrderMethods):
    """The connector's API from another process or machine, through ``ibconn bridge``.

    ``url`` is the NATS server (or a list of them), ``subject_prefix`` the bridge's
    ``bridge.subject_prefix``, ``name`` this remote's durable name (one per
    consumer: a remote restarted under the same name resumes its fills where it
    stopped). ``fills_from`` is ``"new"`` (a new name starts with the fills
    published from its first start) or ``"all"`` (every fill the stream keeps).
    Other keywords go to ``nats.connect`` (``user_credentials``, ``tls``, ...).
    ``nats_client`` is a connected nats-py client to use instead (``url`` and the
    options are then unused, and :meth:`close` leaves it open): remotes of one process
    on one client share one subscription per market data subject.
    """

    def __init__(
        self,
        url: str | list[str] = "nats://127.0.0.1:4222",
        *,
        subject_prefix: str = "ibconn",
        name: str,
        capacity: int = 1024,
        command_timeout: float = 10.0,
        heartbeat_timeout: float = 3.0,
        fills_from: str = "new",
        retry_delay: float = 0.5,
        nats_client: Any = None,
        **nats_options: Any,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInputError(
                f"name={name!r} is not valid: allowed are 1-64 letters, digits, '_' or '-' "
                "(it names this remote's durable consumer)"
            )
        protocol.check_prefix(subject_prefix)
        if fills_from not in {"new", "all"}:
            raise InvalidInputError(f"fills_from={fills_from!r} is not valid: 'new' or 'all'")
        self._url = url
        self._prefix = subject_prefix
        self._name = name
        self._capacity = capacity_arg("capacity", capacity) or 1024
        self._command_timeout = timeout_arg("command_timeout", command_timeout) or 10.0
        self._nats_options = nats_options
        self._client = nats_client
        self._nc: Any = None
        self._feeds = RemoteFeeds(
            prefix=subject_prefix,
            name=name,
            capacity=self._capacity,
            heartbeat_timeout=timeout_arg("heartbeat_timeout", heartbeat_timeout) or 3.0,
            fills_from=fills_from,
            retry_delay=timeout_arg("retry_delay", retry_delay) or 0.5,
            on_new_epoch=self._on_new_epoch,
        )
        self._commands: CommandClient | None = None

    # -- life cycle ------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to NATS and start following the bridge (its consumers and snapshot)."""
        nats = _import_nats()
        if self._client is not None:
            if not self._client.is_connected:
                raise ConnectError("nats_client is not connected: connect it first")
            self._nc = self._client
        else:
            servers = [self._url] if isinstance(self._url, str) else list(self._url)
            options = {"name": f"ibconn-remote-{self._name}", **self._nats_options}
            try:
                self._nc = await nats.connect(servers=servers, **options)
            except Exception as exc:
                raise ConnectError(f"could not connect to NATS at {servers}: {exc}") from exc
        self._commands = CommandClient(self._request, self._prefix, self._command_timeout)
        try:
            await self._feeds.start(self._nc)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop following the bridge and close the NATS connection (not a ``nats_client``
        passed in); iterators end."""
        await self._feeds.stop()
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)  # the acknowledgements
            if nc is not self._client:
                with contextlib.suppress(Exception):
                    await nc.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _request(self, subject: str, payload: bytes, timeout: float) -> bytes:
        if self._nc is None:
            raise NotConnectedError("the RemoteConnector is not connected: use `async with`")
        errors = importlib.import_module("nats.errors")
        try:
            msg = await self._nc.request(subject, payload, timeout=timeout)
        except errors.NoRespondersError as exc:
            raise NoBridge(str(exc) or "no responders") from None
        return bytes(msg.data)

    def _command_client(self) -> CommandClient:
        if self._commands is None:
            raise NotConnectedError("the RemoteConnector is not connected: use `async with`")
        return self._commands

    async def _on_new_epoch(self) -> None:
        for symbol in self._feeds.market_symbols():
            await self._send_subscribe(symbol)

    async def _send_subscribe(self, symbol: str) -> None:
        try:
            await self._command_client().call("subscribe", {"symbols": [symbol]}, key=None)
        except Exception as exc:
            self._feeds.subscribe_errors[symbol] = f"{type(exc).__name__}: {exc}"
            log.warning("the bridge did not subscribe %s: %s", symbol, exc)

    # -- streams ---------------------------------------------------------------

    def _market(self, symbol: str, kind: str, capacity: int | None) -> Subscription[Any]:
        if not isinstance(symbol, str) or not symbol.strip():
            raise InvalidInputError(f"symbol={symbol!r} is not valid: a non-empty symbol text")
        if self._nc is None:
            raise NotConnectedError("the RemoteConnector is not connected: use `async with`")
        sub, new = self._feeds.market(symbol, kind, capacity_arg("capacity", capacity))
        if new:
            self._feeds.spawn(self._send_subscribe(symbol))
        return sub

    def quotes(self, symbol: str, *, capacity: int | None = None) -> Subscription[Quote]:
        """Quotes of ``symbol`` from the bridge; a slow consumer gets the latest (conflated)."""
        return self._market(symbol, "quote", capacity)

    def trades(self, symbol: str, *, capacity: int | None = None) -> Subscription[Trade]:
        """Trades of ``symbol``; a slow consumer loses the oldest unread ones (counted)."""
        return self._market(symbol, "trade", capacity)

    def bars(self, symbol: str, *, capacity: int | None = None) -> Subscription[Bar]:
        """The bars the bridge publishes for ``symbol``; more than ``capacity`` behind:
        :class:`~ibconn.errors.StreamOverflowError`."""
        return self._market(symbol, "bar", capacity)

    def fills(self, capacity: int | None = None) -> Subscription[Fill]:
        """Every fill exactly once, from this remote's durable position on; never drops one.

        While no ``fills()`` iterator is open the fills wait in JetStream; the
        remote fetches only what its iterators have room for.
        """
        return self._feeds.fills.subscribe(capacity_arg("capacity", capacity))

    def order_updates(self, capacity: int | None = None) -> Subscription[OrderUpdate]:
        """Order changes from now on, each at most once (after a resync, only newer ones)."""
        return self._feeds.orders_fanout.subscribe(capacity_arg("capacity", capacity))

    def position_updates(self, capacity: int | None = None) -> Subscription[Position]:
        """Position changes from now on, each at most once (after a resync, only newer ones)."""
        return self._feeds.positions_fanout.subscribe(capacity_arg("capacity", capacity))

    def connection_events(
        self, capacity: int | None = None
    ) -> Subscription[ConnectionEvent | BridgeLost | BridgeRestored]:
        """The bridge's connection events, plus :class:`BridgeLost` when its heartbeats stop
        and :class:`BridgeRestored` when they come back."""
        return self._feeds.connection.subscribe(capacity_arg("capacity", capacity))

    # -- state -----------------------------------------------------------------

    def positions(self) -> list[Position]:
        """The bridge's positions (its snapshot with every newer update applied)."""
        return list(self._feeds.positions.view.items().values())

    def open_orders(self) -> list[OrderSnapshot]:
        """The bridge's working orders (its snapshot with every newer update applied)."""
        orders = self._feeds.orders.view.items().values()
        return [o for o in orders if not o.is_done]

    def bridge_state(self) -> BridgeState:
        """The bridge as its last heartbeat described it (``alive`` False: silent too long)."""
        return self._feeds.heartbeat.state()

    def statistics(self) -> RemoteStatistics:
        """Fills delivered and duplicates, resyncs, skipped messages, commands sent."""
        feeds = self._feeds
        fills = feeds.fill_consumer
        return RemoteStatistics(
            fills_delivered=fills.delivered if fills is not None else 0,
            fill_duplicates=fills.duplicates if fills is not None else 0,
            fill_commissions=fills.commissions if fills is not None else 0,
            resyncs={
                "orders": feeds.orders.view.resyncs,
                "positions": feeds.positions.view.resyncs,
            },
            skipped=dict(feeds.skips.counts),
            commands=self._commands.sent if self._commands is not None else 0,
        )

    @property
    def name(self) -> str:
        """This remote's durable name."""
        return self._name
