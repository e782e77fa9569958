"""The bridge's NATS link: connect with the settings' credentials and TLS, create the streams
and buckets.

``nats-py`` is imported here (and by the modules that take the client), so that
``ibconn.bridge.protocol`` and the settings stay importable without the ``nats`` extra.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from ibconn.bridge.protocol import Names
from ibconn.bridge.settings import BridgeSettings
from ibconn.errors import ConfigError, ConnectError, MissingDependencyError

__all__ = [
    "SHORT_DUPLICATE_WINDOW",
    "connect_nats",
    "ensure_jetstream",
    "flush_through",
    "require_nats",
]

CONNECT_TIMEOUT = 5.0
"""Seconds the first connect to each NATS server may take before the bridge gives up."""

SHORT_DUPLICATE_WINDOW = 120.0
"""Duplicate window (s) of the streams other than fills: long enough for a retried publish."""


def require_nats() -> Any:
    """The ``nats`` package, or :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module("nats")
    except ImportError as exc:
        raise MissingDependencyError(
            "the bridge needs nats-py: pip install 'ibconn[nats]'", package="nats", extra="nats"
        ) from exc


def _tls_context(settings: BridgeSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if not tls.enabled:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        if tls.cert_file is not None:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file is not None else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"bridge.tls: cannot load the TLS files: {exc}",
            key="bridge.tls",
            value=str(tls),
            allowed="readable PEM files: ca_file, cert_file and its key_file",
        ) from exc
    return context


async def connect_nats(
    settings: BridgeSettings,
    *,
    name: str,
    reconnected: Callable[[], Awaitable[None]] | None = None,
    disconnected: Callable[[], Awaitable[None]] | None = None,
) -> Any:
    """A connected ``nats.aio.client.Client`` that reconnects forever once up.

    Raises :class:`ConnectError` when no server of ``bridge.url`` answers.
    """
    nats = require_nats()
    options: dict[str, Any] = {
        "servers": settings.urls,
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
    }
    if settings.user is not None:
        options["user"] = settings.user
        options["password"] = settings.password
    if settings.token is not None:
        options["token"] = settings.token
    if settings.creds_file is not None:
        if not settings.creds_file.is_file():
            raise ConfigError(
                f"bridge.creds_file {settings.creds_file} does not exist",
                key="bridge.creds_file",
                value=str(settings.creds_file),
                allowed="the path of a NATS credentials file",
            )
        options["user_credentials"] = str(settings.creds_file)
    context = _tls_context(settings)
    if context is not None:
        options["tls"] = context
        if settings.tls.hostname:
            options["tls_hostname"] = settings.tls.hostname

    async def quiet_error(exc: Exception) -> None:  # nats-py logs every reconnect failure
        del exc

    options["error_cb"] = quiet_error
    if reconnected is not None:
        options["reconnected_cb"] = reconnected
    if disconnected is not None:
        options["disconnected_cb"] = disconnected
    wait = CONNECT_TIMEOUT * len(settings.urls)
    try:  # nats-py retries the first connect forever when reconnects are unlimited
        async with asyncio.timeout(wait):
            return await nats.connect(**options)
    except TimeoutError as exc:
        raise ConnectError(
            f"cannot connect to NATS at {settings.url}: no answer within {wait:g} s"
        ) from exc
    except Exception as exc:  # nats-py raises several types, and OSError
        raise ConnectError(f"cannot connect to NATS at {settings.url}: {exc!r}") from exc


async def flush_through(nc: Any, timeout: float = CONNECT_TIMEOUT) -> None:
    """Return once the server has processed everything ``nc`` sent so far (its SUBs above all).

    nats-py's ``flush()`` writes its PING straight to the socket, ahead of the commands
    still queued for its flusher task, so its PONG can come back before a SUB just made
    has reached the server (another client's request then gets "no responders"). Those
    commands are written before that PONG is read (the flusher task runs before the loop
    polls the socket again), so a second PING follows them and its PONG proves them done.
    """
    await nc.flush(timeout=timeout)
    await nc.flush(timeout=timeout)


async def ensure_jetstream(js: Any, settings: BridgeSettings, names: Names) -> dict[str, Any]:
    """Create (or update) the streams of ``bridge.streams`` and the two KV buckets.

    Returns the buckets by name: ``{"snapshot": kv, "commands": kv}``.
    """
    api = importlib.import_module("nats.js.api")
    errors = importlib.import_module("nats.js.errors")
    for stream in settings.streams:
        window = settings.fill_dedupe_window if stream == "fills" else SHORT_DUPLICATE_WINDOW
        config = api.StreamConfig(
            name=names.stream(stream),
            subjects=names.stream_subjects(stream),
            storage=api.StorageType.FILE,
            max_age=settings.retention,
            duplicate_window=min(window, settings.retention),
        )
        try:
            await js.add_stream(config)
        except errors.BadRequestError:  # exists with another configuration
            await js.update_stream(config)
    buckets: dict[str, Any] = {}
    for key, bucket, ttl in (
        ("snapshot", names.snapshot_bucket, None),
        ("commands", names.commands_bucket, settings.command_dedupe_window),
    ):
        config = api.KeyValueConfig(bucket=bucket, history=1, ttl=ttl, storage=api.StorageType.FILE)
        try:
            buckets[key] = await js.create_key_value(config)
        except errors.BadRequestError:  # exists with another configuration: use it
            buckets[key] = await js.key_value(bucket)
    return buckets
