"""A graceful close delivers what was sent before it, even with the client's request unread."""

from __future__ import annotations

from ibconn.sim import SimulatedGateway

from ..conftest import RawClient


async def test_a_port_move_reaches_a_client_whose_last_request_is_unread(
    gw: SimulatedGateway, raw_clients: list[RawClient]
) -> None:
    client = await RawClient.connect(gw.port)
    raw_clients.append(client)
    await client.expect(lambda m: m[0] == "9")  # nextValidId: the API is up
    # A request the gateway has not read when it moves: closing the socket with unread
    # data would reset the connection and the client's kernel would drop the 1300.
    client.send(49, 1)  # reqCurrentTime
    await gw.restart(downtime=0.0, new_port=0)
    moved = await client.error(1300)
    assert str(gw.port) in moved[4]
    assert await client.closed()


async def test_a_graceful_drop_still_ends_a_client_that_never_closes(
    gw: SimulatedGateway, raw_clients: list[RawClient]
) -> None:
    client = await RawClient.connect(gw.port)
    raw_clients.append(client)
    await client.expect(lambda m: m[0] == "9")
    # The client reads nothing and never closes its side: the drop ends it anyway.
    await gw.restart(downtime=0.0, new_port=0)
    assert gw.sessions == []
