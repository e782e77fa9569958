"""pytest plugin (entry point ``ibconn``): a running simulated gateway per test.

Use the ``ibconn_gateway`` fixture in an async test::

    async def test_quotes(ibconn_gateway):
        ib = IB()
        await ib.connectAsync("127.0.0.1", ibconn_gateway.port, clientId=1)

Configure it by overriding ``ibconn_gateway_config`` (in a conftest.py or a
test module), or per test with an indirect parameter holding a
:class:`~ibconn.sim.SimConfig` or a mapping of its fields::

    @pytest.mark.parametrize("ibconn_gateway", [{"tick_rate": 50}], indirect=True)
    async def test_fast(ibconn_gateway): ...

The fixture needs pytest-asyncio; without it, tests that use it fail with a
message saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from ibconn.sim.config import SimConfig
from ibconn.sim.server.gateway import SimulatedGateway

__all__ = ["ibconn_gateway", "ibconn_gateway_config"]


@pytest.fixture
def ibconn_gateway_config() -> SimConfig:
    """Settings of the ``ibconn_gateway`` fixture; override it to change them."""
    return SimConfig()


async def _gateway(request: Any, config: SimConfig) -> AsyncIterator[SimulatedGateway]:
    param = getattr(request, "param", None)
    if isinstance(param, SimConfig):
        config = param
    elif isinstance(param, Mapping):
        config = SimConfig.from_mapping({**config.model_dump(), **dict(param)})
    elif param is not None:
        raise TypeError("ibconn_gateway's parameter must be a SimConfig or a mapping")
    async with SimulatedGateway(port=0, config=config) as gateway:
        yield gateway


async def _running_gateway(
    request: pytest.FixtureRequest, ibconn_gateway_config: SimConfig
) -> AsyncIterator[SimulatedGateway]:
    """A running :class:`SimulatedGateway` on 127.0.0.1 and a free port, stopped after the test."""
    async for gateway in _gateway(request, ibconn_gateway_config):
        yield gateway


def _needs_pytest_asyncio() -> None:
    """Stands in for ``ibconn_gateway`` when pytest-asyncio is not installed."""
    pytest.fail("the ibconn_gateway fixture needs pytest-asyncio (pip install pytest-asyncio)")


ibconn_gateway: Any
try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the user's environment
    ibconn_gateway = pytest.fixture(name="ibconn_gateway")(_needs_pytest_asyncio)
else:
    ibconn_gateway = pytest_asyncio.fixture(name="ibconn_gateway")(_running_gateway)
