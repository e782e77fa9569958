"""The what-if preview (ibconn.positions.what_if)."""

from __future__ import annotations

import pytest

from ibconn import IBConnector, InvalidInputError
from ibconn.orders.models import OrderSpec
from ibconn.sim import SimulatedGateway

from .support import ACCOUNT

pytestmark = pytest.mark.timeout(30)


async def test_what_if_previews_margin_and_commission_without_placing(
    gw: SimulatedGateway, connector: IBConnector
) -> None:
    spec = OrderSpec(symbol="AAPL", action="BUY", quantity=100, order_type="LMT", limit_price=190)
    result = await connector.what_if(spec)
    assert (result.account, result.symbol, result.quantity) == (ACCOUNT, "AAPL", 100)
    assert result.init_margin_before == 0
    assert result.init_margin_change == pytest.approx(100 * 190.0 * 0.25, rel=1e-3)
    assert result.init_margin_after == pytest.approx(result.init_margin_change)
    assert result.commission == 1.0 and result.commission_currency == "USD"
    assert result.currency == "USD" and result.warning is None
    assert gw.orders == [] and connector.orders() == []
    with pytest.raises(InvalidInputError):
        await connector.what_if(spec.replace(limit_price=190.001))  # off the tick
