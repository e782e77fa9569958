"""Import paths of ibconn 0.1 that keep working, with a ``DeprecationWarning``, for one release.

ibconn 0.1 kept 40 modules side by side (``ibconn.orders``, ``ibconn.models``, ...).
They now live in one package per capability. Every name an old module exported
is still found under its old path: the lookup warns once per name and returns
the object from where it lives now, so nothing is copied and nothing drifts.

Only the names listed in ``ibconn.__all__`` (and ``ibconn.sim.__all__``) are
the public API; the deep paths below are internal and will go in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import pkgutil
import sys
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["OLD_MODULES", "RENAMED", "install_old_module_finder", "old_names_getattr"]

OLD_MODULES: dict[str, tuple[str, str]] = {
    "alerts": ("core", "Alert AlertBus AlertSink AlertStatistics Severity"),
    "arguments": (
        "core",
        "MAX_CAPACITY MAX_TIMEOUT capacity_arg check_contract flag_arg number_arg text_arg "
        "text_problem timeout_arg",
    ),
    "bars": (
        "market_data",
        "BarAggregator HISTORICAL_BAR_SIZES STREAM_BAR_SIZES max_request_span parse_bar_size "
        "parse_duration",
    ),
    "closing": ("wire", "install_safe_close safe_disconnect"),
    "codes": (
        "core",
        "CANCEL_FAILED_CODES CODE_TABLE CONNECTIVITY_LOST_CODES CONNECTIVITY_RESTORED_CODES "
        "CodeCategory CodeInfo FARM_BROKEN_CODES FARM_INACTIVE_CODES FARM_OK_CODES "
        "NOT_CONNECTED_CODES ORDER_REJECT_CODES ORDER_REJECT_JSON_RANGE PACING_CODES "
        "RecoveryAction Severity classify codes_in farm_name is_warning port_from_1300",
    ),
    "config": (
        "config",
        "ConnectorSettings ENV_PREFIX LogLevel MarketDataType YAML_SECTION "
        "config_error_from_validation read_yaml_section",
    ),
    "contracts": (
        "contracts",
        "ContractLike ContractResolver ResolvedContract symbol_key to_contract trading_symbol",
    ),
    "demo": ("cli", "add_demo_parser run_demo"),
    "exits": ("risk", "ExitLevel ExitPlan ExitService"),
    "fills": ("orders", "FillLedger LedgerOutcome LedgerResult exec_revision to_decimal"),
    "frames": ("core", "to_frame"),
    "gc_tuning": ("wire", "GcState gc_state restore_gc tune_gc_for_streaming"),
    "history": ("market_data", "HistoryFetcher WHAT_TO_SHOW check_request"),
    "inbound": (
        "wire",
        "InboundReport MAX_FRAME_BYTES install_inbound_guard order_message_problem",
    ),
    "logs": ("core", "CATEGORIES Category disable_logging enable_logging get_logger"),
    "market_data": (
        "market_data",
        "LineInfo MarketDataService MarketDataStatistics MarketDataSubscription MarketStream "
        "StreamKind",
    ),
    "market_data_api": ("market_data", "MarketDataMethods"),
    "market_lines": (
        "market_data",
        "Backfill Feed InstrumentState Line LineInfo MKT MarketDataStatistics RTB STREAM_POLICIES "
        "TBT quote_replaces",
    ),
    "market_streams": ("market_data", "MarketDataSubscription MarketStream"),
    "models": (
        "market_data",
        "Bar BarSource MarketDataItem Quote StatusKind StreamKind StreamStatus Tick TickKind "
        "Trade TradeSource",
    ),
    "order_api": ("orders", "OrderMethods"),
    "order_convert": (
        "orders",
        "absorb_order apply_spec aware_utc map_tws_status pnl_or_none price_or_none "
        "spec_following spec_from_order spec_key to_fill with_commission",
    ),
    "order_models": (
        "orders",
        "Fill MAX_PRICE MAX_QUANTITY OrderAction OrderError OrderSnapshot OrderSpec OrderStatus "
        "OrderType OrderUpdate TAG_PATTERN TimeInForce UpdateKind exec_prefix",
    ),
    "order_records": (
        "orders",
        "AckTimeout OrderHandle OrderLike OrderRecord Until Waiter WorkingIndex expire_future "
        "new_run_prefix until_of",
    ),
    "order_validation": (
        "orders",
        "MarketRules PriceIncrement Quote check_bracket_prices increment_at needs_quote "
        "quote_reference validate_order",
    ),
    "orders": (
        "orders",
        "BracketOrder OrderHandle OrderLike OrderService PreTradeCheck map_tws_status",
    ),
    "pnl": (
        "positions",
        "FillEffect JournalEntry Number PositionLedger PositionState apply_fill as_decimal",
    ),
    "position_api": ("positions", "PositionMethods"),
    "position_models": (
        "positions",
        "AccountPnL AccountSummary MarkSource MismatchKind Position PositionMismatch "
        "PositionSource WhatIfResult clean_number",
    ),
    "positions": ("positions", "PositionService PositionStatistics"),
    "receive": (
        "wire",
        "FastReceiver SUPPORTED_IB_ASYNC fast_receive_installed fast_receive_supported "
        "install_fast_receive receiver_of uninstall_fast_receive yield_to_waiters",
    ),
    "risk": (
        "risk",
        "Exposure Holding InstrumentExposure KillSwitchState RiskLimit RiskService trading_day",
    ),
    "risk_api": ("risk", "RiskMethods"),
    "session": ("connection", "ConnectionEvent ConnectionState Service Session move_handlers"),
    "streams": ("core", "Broadcast FilteredFanout OverflowPolicy StreamStatistics Subscription"),
    "supervisor": ("connection", "Supervisor"),
    "tick_decoding": (
        "wire",
        "MKT MKT_WIDTH SAFE_MESSAGE_IDS TBT TBT_WIDTH TapLine TickTap set_last_trade",
    ),
    "validation": ("market_data", "CAN_TRADE_BELOW_ZERO TickValidator ValidationStats"),
    "sim.accounts": (
        "sim",
        "DEFAULT_COMMISSIONS DEFAULT_MARGINS UNSET_DOUBLE AccountFigures AccountValue "
        "CommissionRate Ledger MarginRate PnLFigures PositionSnapshot ledger_values "
        "order_commission summary_values",
    ),
    "sim.broker": (
        "sim",
        "DONE_STATES ORDER_TYPES TIFS AccountEvent Broker BrokerConfig BrokerEvent BrokerState "
        "CommissionEvent ExecutionEvent ExecutionFilter JournalEntry OpenOrderEvent "
        "OrderErrorEvent OrderPreview OrderRequest OrderStatusEvent PositionEvent SimExecution "
        "SimOrder",
    ),
    "sim.broker_handlers": ("sim", "MISSING_EXCHANGE_TEXT broker_handlers create_broker"),
    "sim.broker_service": ("sim", "GatewayBroker broker_config_from"),
    "sim.cli": ("sim", "add_sim_parser run_control run_sim"),
    "sim.clock": ("sim", "SimClock"),
    "sim.control": ("sim", "COMMANDS Command ControlCommandError ControlServer Param send_command"),
    "sim.faults": ("sim", "FARMS FaultControls OutputShape farm_of"),
    "sim.gateway": (
        "sim",
        "ClientInfo ClientSession Handler ReceivedHook ReceivedMessage SimulatedGateway "
        "contract_details_fields error_text",
    ),
    "sim.history": (
        "sim",
        "BAR_SIZES Bar WHAT_TO_SHOW HistoryRequestError bar_start duration_bar_count "
        "format_bar_time generate_bars parse_bar_size parse_end_time",
    ),
    "sim.instruments": (
        "sim",
        "DEFAULT_INSTRUMENTS SCHEDULES Instrument InstrumentBook MarketRule market_rules "
        "session_hours",
    ),
    "sim.market_data": ("sim", "DELAYED_TICK_TYPES MarketDataService TickType"),
    "sim.matching": (
        "sim",
        "Quote conforms_to_tick is_size_multiple limit_marketable round_to_tick stop_triggered "
        "touch trail_offset trail_stop_after",
    ),
    "sim.message_log": ("sim", "MessageLog ReceivedMessage message_bytes"),
    "sim.options": ("sim", "RATE Greeks black_scholes price_option years_to_expiry"),
    "sim.order_messages": (
        "sim",
        "UNSET_DOUBLE_TEXT account_download_end_fields account_summary_end_fields "
        "account_summary_fields account_time_fields account_update_multi_end_fields "
        "account_update_multi_fields account_value_fields commission_report_fields "
        "completed_order_fields completed_orders_end_fields error_fields "
        "exec_details_end_fields exec_details_fields format_exec_time num open_order_end_fields "
        "open_order_fields order_status_fields parse_execution_filter parse_place_order "
        "pnl_fields pnl_single_fields portfolio_fields position_end_fields position_fields "
        "position_multi_end_fields position_multi_fields",
    ),
    "sim.prices": (
        "sim",
        "BlastResult Change FlowControl Market Quote QuoteListener RandomWalk ReplayRow "
        "load_replay_csv tick_decimals",
    ),
    "sim.protocol": (
        "sim",
        "API_PREFIX INT32_MAX INT32_MIN KNOWN_REQUEST_IDS MAX_MESSAGE_SIZE MIN_SERVER_VERSION "
        "SERVER_VERSION TWS_ERROR_TEXTS UNSET_DOUBLE UNSET_INTEGER UNSET_LONG ContractSpec "
        "FieldReader FrameError FrameReader Handler In Out ProtocolError RequestParseError "
        "ascii_safe decode_fields encode_fields encode_message error_message_fields "
        "format_field format_float int32 parse_version_range req_id_of",
    ),
    "sim.state_file": ("sim", "FORMAT StateFile dump_state load_state"),
    "sim.versions": (
        "sim",
        "ADVANCED_ORDER_REJECT AUTO_CANCEL_PARENT BOND_ISSUERID DURATION FA_PROFILE_DESUPPORT "
        "FRACTIONAL_SIZE_SUPPORT MANUAL_ORDER_TIME MIN_SERVER_VERSION PEGBEST_PEGMID_OFFSETS "
        "PENDING_PRICE_REVISION POST_TO_ATS SERVER_VERSION SIZE_RULES",
    ),
}
"""Old module (under ``ibconn.``) -> (the package holding its names now, its ``__all__`` then)."""


RENAMED: dict[str, dict[str, str]] = {
    "order_validation": {"Quote": "PriceReference"},
    "sim.prices": {"Quote": "MarketQuote"},
    "sim.matching": {"Quote": "BookQuote"},
    "sim.market_data": {"MarketDataService": "MarketDataFeeds"},
}
"""Names an old module had that live on under another name (old module -> old -> new)."""


def _public_root(package: str) -> str:
    """The public namespace for names of ``package``: ``ibconn.sim`` for the gateway's."""
    return "ibconn.sim" if package == "sim" or package.startswith("sim.") else "ibconn"


def _find(name: str, package: str) -> Any:
    """The object called ``name``: public first, else in ``ibconn.<package>``, else anywhere
    below the public namespace (``ibconn`` or ``ibconn.sim``)."""
    public = importlib.import_module(_public_root(package))
    if name in getattr(public, "__all__", ()):
        return getattr(public, name)
    for root in (f"ibconn.{package}", public.__name__):
        found = _search(importlib.import_module(root), name)
        if found is not _MISSING:
            return found
    raise AttributeError(name)  # pragma: no cover - every listed name exists (tested)


_MISSING = object()


def _search(root: types.ModuleType, name: str) -> Any:
    """``name`` from the first module below ``root`` whose ``__all__`` lists it."""
    for info in pkgutil.walk_packages(root.__path__, f"{root.__name__}."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue  # __main__ and private modules: never a home of a public name
        module = importlib.import_module(info.name)
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    return _MISSING


def _warn(old: str, name: str | None, new_name: str | None = None) -> None:
    what = f"ibconn.{old}.{name}" if name else f"ibconn.{old}"
    public = _public_root(OLD_MODULES[old][0])
    target = new_name or name
    if target and target in getattr(importlib.import_module(public), "__all__", ()):
        hint = f"'from {public} import {target}'"
    else:
        hint = f"the {public} package"
    warnings.warn(
        f"{what} is an import path of ibconn 0.1 and goes in 0.3; use {hint}",
        DeprecationWarning,
        stacklevel=3,
    )


def old_names_getattr(old: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving the old names of ``ibconn.<old>`` with a warning."""
    package, names = OLD_MODULES[old][0], OLD_MODULES[old][1].split()
    renamed = RENAMED.get(old, {})

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module 'ibconn.{old}' has no attribute {name!r}")
        new_name = renamed.get(name, name)
        _warn(old, name, new_name)
        value = _find(new_name, package)
        sys.modules[f"ibconn.{old}"].__dict__[name] = value  # warn once per name
        return value

    return __getattr__


class _OldModuleLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return types.ModuleType(spec.name, f"Deprecated alias of the old {spec.name}.")

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__.removeprefix("ibconn.")
        _warn(old, None)
        setattr(module, "__getattr__", old_names_getattr(old))  # noqa: B010 - a module attribute
        setattr(module, "__all__", OLD_MODULES[old][1].split())  # noqa: B010


class _OldModuleFinder(importlib.abc.MetaPathFinder):
    """Consulted after the path finders: only paths where nothing lives any more reach it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        old = fullname.removeprefix("ibconn.")
        if not fullname.startswith("ibconn.") or old not in OLD_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _OldModuleLoader())


def install_old_module_finder() -> None:
    """Let ``import ibconn.<old module>`` work (with a warning); idempotent."""
    if not any(isinstance(finder, _OldModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_OldModuleFinder())
