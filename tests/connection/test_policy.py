"""The supervisor's decisions as pure functions (ibconn/connection/policy.py): no gateway."""

from __future__ import annotations

import itertools

import pytest

from ibconn.connection.policy import (
    CLIENT_ID_IN_USE_MIN_DELAY,
    SessionAction,
    alternate_port,
    attempt_verdict,
    backoff_delays,
    decide_code,
    describe_failure,
    farm_key,
    first_connect_failed,
    gives_up,
    quick_retry_delay,
    retry_delay,
    still_reconnecting_alert_due,
)
from ibconn.connection.session import ConnectionState

S = ConnectionState
LIVE = (S.CONNECTED, S.DEGRADED)
NOT_LIVE = (S.DISCONNECTED, S.CONNECTING, S.RECONNECTING, S.CLOSED)


# -- TWS codes while a session is up --------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "action"),
    [
        (1100, "Connectivity between IB and TWS has been lost.", SessionAction.DEGRADE),
        (2110, "Connectivity between TWS and server is broken.", SessionAction.DEGRADE),
        (1101, "Connectivity restored - data lost.", SessionAction.RESTORE_RESUBSCRIBE),
        (1102, "Connectivity restored - data maintained.", SessionAction.RESTORE),
        (2103, "Market data farm connection is broken:usfarm", SessionAction.FARM_BROKEN),
        (2104, "Market data farm connection is OK:usfarm", SessionAction.FARM_OK),
        (10197, "No market data during competing live session", SessionAction.COMPETING_SESSION),
        (2107, "HMDS data farm connection is inactive:ushmds", SessionAction.NOTHING),
        (202, "Order Canceled - reason:", SessionAction.NOTHING),
    ],
)
@pytest.mark.parametrize("state", LIVE)
def test_each_connectivity_code_maps_to_its_action_while_a_session_is_up(
    code: int, message: str, action: SessionAction, state: ConnectionState
) -> None:
    assert decide_code(-1, code, message, state).action is action


@pytest.mark.parametrize("state", NOT_LIVE)
@pytest.mark.parametrize("code", [1100, 1101, 1102, 1300, 2103, 2104, 10197])
def test_connectivity_codes_change_nothing_without_a_session(
    code: int, state: ConnectionState
) -> None:
    decision = decide_code(-1, code, "Market data farm connection is OK:usfarm", state)
    assert decision.action is SessionAction.NOTHING
    assert decision.log_level is not None  # still logged


def test_a_1300_moves_to_the_port_it_names() -> None:
    message = "TWS socket port has been reset and this connection is being dropped. New port: 7498"
    decision = decide_code(-1, 1300, message, S.CONNECTED)
    assert decision.action is SessionAction.MOVE_PORT
    assert decision.new_port == 7498


def test_a_1300_without_a_port_still_ends_the_session() -> None:
    decision = decide_code(-1, 1300, "TWS socket port has been reset", S.CONNECTED)
    assert decision.action is SessionAction.MOVE_PORT
    assert decision.new_port is None


def test_every_farm_notice_names_its_farm_in_any_state() -> None:
    # connector.status().farms keeps the last word on each farm, idle ones and those
    # reported while connecting included; only the actions wait for a live session
    inactive = decide_code(-1, 2107, "HMDS data farm connection is inactive:ushmds", S.CONNECTED)
    connecting = decide_code(-1, 2104, "Market data farm connection is OK:usfarm", S.CONNECTING)
    assert inactive.farm == "historical:ushmds" and inactive.action is SessionAction.NOTHING
    assert connecting.farm == "market_data:usfarm" and connecting.action is SessionAction.NOTHING


def test_farm_codes_name_the_farm_so_broken_and_ok_match() -> None:
    broken = decide_code(-1, 2103, "Market data farm connection is broken:usfarm", S.CONNECTED)
    ok = decide_code(-1, 2104, "Market data farm connection is OK:usfarm", S.CONNECTED)
    other = decide_code(-1, 2104, "Market data farm connection is OK:eufarm", S.CONNECTED)
    assert broken.farm is not None and broken.farm == ok.farm
    assert other.farm != ok.farm
    assert farm_key("market_data", "Market data farm connection is OK:usfarm").endswith("usfarm")


def test_a_requests_own_error_is_left_to_its_service_to_log() -> None:
    rejected = decide_code(42, 201, "Order rejected - reason: no margin", S.CONNECTED)
    assert rejected.log_level is None
    assert rejected.action is SessionAction.NOTHING
    # the same code without a request id is the supervisor's to log
    assert decide_code(-1, 201, "Order rejected - reason: no margin", S.CONNECTED).log_level


def test_an_unknown_code_is_logged_never_ignored() -> None:
    decision = decide_code(-1, 98765, "something new", S.CONNECTED)
    assert decision.action is SessionAction.NOTHING
    assert decision.log_level in ("WARNING", "ERROR")


# -- codes during a connect attempt -----------------------------------------------------------


def test_client_id_in_use_fails_the_attempt_and_names_the_id() -> None:
    verdict = attempt_verdict(326, "Unable to connect as the client id is already in use.", 7)
    assert verdict is not None
    assert verdict.code == 326 and not verdict.moved
    assert "client id 7 is in use" in verdict.reason


def test_a_port_move_fails_the_attempt_towards_the_new_port() -> None:
    verdict = attempt_verdict(1300, "TWS socket port has been reset. New port: 7498", 1)
    assert verdict is not None
    assert verdict.moved and verdict.moved_to == 7498 and verdict.code == 1300


@pytest.mark.parametrize("code", [2104, 1100, 2107, 502])
def test_other_codes_leave_the_attempt_to_ib_async(code: int) -> None:
    assert attempt_verdict(code, "Market data farm connection is OK:usfarm", 1) is None


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_cap_without_jitter_above_half() -> None:
    highest = list(itertools.islice(backoff_delays(0.5, 4.0, uniform=lambda _a, b: b), 6))
    lowest = list(itertools.islice(backoff_delays(0.5, 4.0, uniform=lambda a, _b: a), 6))
    assert highest == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert lowest == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_backoff_jitter_stays_between_half_and_the_whole_delay() -> None:
    delays = list(itertools.islice(backoff_delays(1.0, 8.0), 200))
    expected = [min(8.0, 2.0**i) for i in range(200)]
    assert all(e / 2 <= d <= e for d, e in zip(delays, expected, strict=True))
    assert len({round(d, 6) for d in delays[10:]}) > 1  # jittered, not one fixed value


def test_a_reconnect_retries_every_fast_interval_within_its_window_then_backs_off() -> None:
    assert quick_retry_delay(False, 0.0, 0.025, 5.0) == 0.025
    assert quick_retry_delay(False, 4.99, 0.025, 5.0) == 0.025
    assert quick_retry_delay(False, 5.0, 0.025, 5.0) is None  # the backoff from now on
    assert quick_retry_delay(False, 0.0, 0.025, 0.0) is None  # window 0: backoff at once


def test_a_first_connect_keeps_its_own_backoff_without_quick_retries() -> None:
    assert quick_retry_delay(True, 0.0, 0.025, 5.0) is None


def test_after_client_id_in_use_the_next_attempt_waits_a_minimum() -> None:
    assert retry_delay(0.01, 326) == CLIENT_ID_IN_USE_MIN_DELAY
    assert retry_delay(3.0, 326) == 3.0
    assert retry_delay(0.01, None) == 0.01
    assert retry_delay(0.01, 502) == 0.01


# -- giving up and alerting -------------------------------------------------------------------


def test_only_the_first_connect_gives_up_after_its_attempts() -> None:
    assert not gives_up(True, 2, 3)
    assert gives_up(True, 3, 3)
    assert not gives_up(True, 1000, 0)  # 0: wait for TWS forever
    assert not gives_up(False, 1000, 3)  # a session that was up is reconnected forever


def test_a_long_reconnect_alerts_every_n_attempts_and_the_first_connect_never() -> None:
    due = [a for a in range(1, 13) if still_reconnecting_alert_due(False, a, 5)]
    assert due == [5, 10]
    assert not any(still_reconnecting_alert_due(True, a, 5) for a in range(1, 13))


# -- ports ------------------------------------------------------------------------------------


def test_failed_attempts_alternate_between_the_announced_and_the_configured_port() -> None:
    assert alternate_port(7498, 7497, 7498, None) == 7497
    assert alternate_port(7497, 7497, 7498, 502) == 7498
    assert alternate_port(7497, 7497, None, 502) == 7497  # no announced port: stay
    assert alternate_port(7498, 7497, 7498, 1300) == 7498  # a new 1300 named its own port


# -- words for the user -----------------------------------------------------------------------


def test_failures_are_described_in_words_a_user_can_act_on() -> None:
    assert "nothing listens" in describe_failure(ConnectionRefusedError())
    assert "timed out" in describe_failure(TimeoutError())
    sync = describe_failure(ConnectionError(["positions request timed out", "executions"]))
    assert sync == "start-up sync incomplete: positions request timed out; executions"
    assert describe_failure(RuntimeError("boom")) == "RuntimeError: boom"
    assert describe_failure(RuntimeError()) == "RuntimeError: RuntimeError"


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (326, "connect with another client_id"),
        (1300, "TWS moved its API port"),
        (None, "Enable ActiveX and Socket Clients"),
    ],
)
def test_a_first_connect_that_gives_up_says_what_to_do(code: int | None, advice: str) -> None:
    text = first_connect_failed(
        "127.0.0.1", 7497, 3, attempt=4, failure="connection refused", code=code
    )
    assert text.startswith("could not connect to 127.0.0.1:7497 with client id 3 after 4")
    assert "last error: connection refused" in text
    assert advice in text
