"""The local nats-server runner: a free port on 127.0.0.1, JetStream data across restarts."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import nats
import pytest
from nats.js.errors import ServiceUnavailableError

from ibconn.bridge import natsd
from ibconn.bridge.natsd import NatsServer, find_nats_server
from ibconn.errors import ConnectError, InvalidInputError, MissingDependencyError


async def test_the_server_listens_on_loopback_with_jetstream(nats_server: NatsServer) -> None:
    assert nats_server.running and nats_server.port > 0
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    nc = await nats.connect(nats_server.url)
    try:
        assert nc.connected_url is not None and nc.connected_url.hostname == "127.0.0.1"
        info = await nc.jetstream().account_info()
        assert info.streams == 0
    finally:
        await nc.close()


async def _publish_one(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="T", subjects=["t.>"])
        await js.publish("t.x", b"kept", headers={"Nats-Msg-Id": "one"})
    finally:
        await nc.close()


async def _stored(url: str) -> list[bytes]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("t.>", durable=None)
        messages = await sub.fetch(10, timeout=1.0)
        return [message.data for message in messages]
    finally:
        await nc.close()


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "kill"])
async def test_a_restart_keeps_the_port_and_the_jetstream_data(
    nats_server: NatsServer, kill: bool
) -> None:
    port, pid = nats_server.port, nats_server.pid
    await _publish_one(nats_server.url)
    await nats_server.restart(kill=kill)
    assert nats_server.running and nats_server.port == port and nats_server.pid != pid
    assert await _stored(nats_server.url) == [b"kept"]


async def test_stop_ends_the_process_and_start_brings_it_back(nats_server: NatsServer) -> None:
    await nats_server.stop()
    assert not nats_server.running and nats_server.pid is None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", nats_server.port)
    await nats_server.start()
    nc = await nats.connect(nats_server.url)
    await nc.close()


async def test_a_given_port_and_store_are_used(tmp_path: Path) -> None:
    async with NatsServer(store_dir=tmp_path / "a") as first:
        port = first.port
        await _publish_one(first.url)
    # the port is free again and the store dir, given by the caller, stays
    assert (tmp_path / "a").is_dir()
    async with NatsServer(port=port, store_dir=tmp_path / "a") as second:
        assert second.port == port
        assert await _stored(second.url) == [b"kept"]


async def test_an_own_store_is_removed_on_close() -> None:
    server = NatsServer()
    async with server:
        store = server.store_dir
        assert store is not None and store.is_dir()
    assert not store.exists() and not server.running


async def test_jetstream_can_be_left_off(tmp_path: Path) -> None:
    async with NatsServer(jetstream=False) as server:
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(ServiceUnavailableError):
                await nc.jetstream().account_info()
        finally:
            await nc.close()


async def test_a_server_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    # a port already taken by a running server: the second exits and says why
    async with NatsServer() as first:
        second = NatsServer(port=first.port, store_dir=tmp_path / "b")
        with pytest.raises(ConnectError, match="exited") as caught:
            await second.start()
        assert "address already in use" in str(caught.value).lower()
        assert not second.running


@pytest.mark.parametrize("port", [-1, 65536, 1.5, True])
def test_a_bad_port_is_refused(port: object) -> None:
    with pytest.raises(InvalidInputError, match="port"):
        NatsServer(port=port)  # type: ignore[arg-type]


@pytest.mark.parametrize("arg", ["--addr=0.0.0.0", "-a", "--http_port", "--cluster", "-p"])
def test_options_that_would_listen_elsewhere_are_refused(arg: str) -> None:
    with pytest.raises(InvalidInputError, match=r"127\.0\.0\.1"):
        NatsServer(extra_args=[arg, "x"])


def test_the_binary_of_this_environment_is_found() -> None:
    found = find_nats_server()
    assert found.name.startswith("nats-server")
    assert found.parent == Path(sys.executable).parent or os.access(found, os.X_OK)


def test_a_missing_binary_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(natsd.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(natsd.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError) as caught:
        find_nats_server()
    assert caught.value.extra == "nats" and "ibconn[nats]" in str(caught.value)


def test_a_binary_on_path_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "nats-server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(natsd.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(natsd.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(fake.parent))
    assert find_nats_server() == fake


async def test_nothing_listens_but_the_client_port_on_loopback(nats_server: NatsServer) -> None:
    assert nats_server.log_file is not None
    listening = [
        line for line in nats_server.log_file.read_text().splitlines() if "Listening for" in line
    ]
    assert listening == [
        line for line in listening if f"client connections on 127.0.0.1:{nats_server.port}" in line
    ]
    assert len(listening) == 1, listening
