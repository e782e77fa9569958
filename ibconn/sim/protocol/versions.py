"""Server-version boundaries the simulated gateway crosses (named as in ``server_versions.py``).

The handshake agrees on ``min(SERVER_VERSION, client max)`` and refuses clients
whose maximum is below :data:`MIN_SERVER_VERSION`. Every encoder and request
parser that has a layout change inside ``MIN_SERVER_VERSION..SERVER_VERSION``
takes the session's negotiated version and tests it against these constants,
so the layout rules live in one place per message.
"""

from __future__ import annotations

__all__ = [
    "ADVANCED_ORDER_REJECT",
    "AUTO_CANCEL_PARENT",
    "BOND_ISSUERID",
    "DURATION",
    "FA_PROFILE_DESUPPORT",
    "FRACTIONAL_SIZE_SUPPORT",
    "MANUAL_ORDER_TIME",
    "MIN_SERVER_VERSION",
    "PEGBEST_PEGMID_OFFSETS",
    "PENDING_PRICE_REVISION",
    "POST_TO_ATS",
    "SERVER_VERSION",
    "SIZE_RULES",
]

SERVER_VERSION = 178
"""The newest version the simulator speaks."""

MIN_SERVER_VERSION = 157
"""The oldest version the simulator speaks (ib_async's and ib_insync's own minimum)."""

DURATION = 158
"""openOrder (5): ``duration`` after ``usePriceMgmtAlgo``; placeOrder (3) sends it."""

POST_TO_ATS = 160
"""openOrder (5): ``postToAts``; placeOrder (3) sends it."""

AUTO_CANCEL_PARENT = 162
"""openOrder (5): ``autoCancelParent``; placeOrder (3) sends it."""

FRACTIONAL_SIZE_SUPPORT = 163
"""contractData (10) at exactly 163: one ``sizeMinTick`` field after ``stockType``."""

SIZE_RULES = 164
"""contractData (10): no version field and no ``mdSizeMultiplier`` from here; ``minSize``,
``sizeIncrement`` and ``suggestedSizeIncrement`` at the end."""

ADVANCED_ORDER_REJECT = 166
"""error (4): the ``advancedOrderRejectJson`` field; placeOrder (3) sends
``advancedErrorOverride``."""

MANUAL_ORDER_TIME = 169
"""placeOrder (3) sends ``manualOrderTime``; cancelOrder (4) ``manualOrderCancelTime``."""

PEGBEST_PEGMID_OFFSETS = 170
"""openOrder (5) and completedOrder (101): the five PEG BEST / PEG MID fields at the end."""

BOND_ISSUERID = 176
"""reqContractDetails (9) sends ``issuerId`` after the contract."""

FA_PROFILE_DESUPPORT = 177
"""Below this, openOrder (5), completedOrder (101) and placeOrder (3) carry the deprecated
``faProfile`` after ``faPercentage``."""

PENDING_PRICE_REVISION = 178
"""execDetails (11): ``pendingPriceRevision`` after ``lastLiquidity``."""
