"""The positions tests' gateway: P&L and portfolio updates every 50 ms."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    """Fast P&L and account updates (marks and account P&L are read from them)."""
    return {"pnl_interval": 0.05, "account_update_interval": 0.05}
