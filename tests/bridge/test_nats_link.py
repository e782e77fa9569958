"""The NATS link: the missing extra, credentials and TLS files, an unreachable server."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from ibconn import ConfigError, ConnectError, MissingDependencyError
from ibconn.bridge import nats_link
from ibconn.bridge.settings import BridgeSettings


def test_without_nats_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_nats(name: str, package: str | None = None) -> Any:
        if name == "nats" or name.startswith("nats."):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_nats)
    with pytest.raises(MissingDependencyError) as info:
        nats_link.require_nats()
    assert info.value.extra == "nats" and "ibconn[nats]" in str(info.value)


async def test_a_missing_credentials_file_is_a_config_error(tmp_path: Path) -> None:
    settings = BridgeSettings.build({"creds_file": str(tmp_path / "none.creds")})
    with pytest.raises(ConfigError) as info:
        await nats_link.connect_nats(settings, name="t")
    assert info.value.key == "bridge.creds_file"


async def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    settings = BridgeSettings.build({"tls": {"ca_file": str(bad)}})
    with pytest.raises(ConfigError) as info:
        await nats_link.connect_nats(settings, name="t")
    assert info.value.key == "bridge.tls" and "PEM" in str(info.value.allowed)


async def test_an_unreachable_server_is_a_connect_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nats_link, "CONNECT_TIMEOUT", 0.5)
    settings = BridgeSettings.build({"url": "nats://127.0.0.1:1"})
    with pytest.raises(ConnectError, match=r"cannot connect to NATS at nats://127.0.0.1:1"):
        await nats_link.connect_nats(settings, name="t")


async def test_after_flush_through_another_client_always_finds_a_new_subscription(
    nats_url: str,
) -> None:
    # nats-py's flush() alone returned before the SUB reached the server in 17 of 300
    # rounds of this loop (load ~2): the bridge's first command then got "no responders".
    nats = nats_link.require_nats()
    responder, requester = await nats.connect(nats_url), await nats.connect(nats_url)
    misses = 0
    try:
        for n in range(300):

            async def answer(msg: Any) -> None:
                await msg.respond(b"ok")

            sub = await responder.subscribe(f"probe.{n}", queue="q", cb=answer)
            await nats_link.flush_through(responder)
            try:
                await requester.request(f"probe.{n}", b"?", timeout=5)
            except nats.errors.NoRespondersError:
                misses += 1
            await sub.unsubscribe()
    finally:
        await responder.close()
        await requester.close()
    assert misses == 0
