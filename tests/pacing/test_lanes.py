"""The pacer's waiting room (ibconn/pacing/lanes.py): FIFO per priority, no socket, no clock."""

from __future__ import annotations

from ibconn.pacing import HistoricalRules, Priority
from ibconn.pacing.historical import HistoricalRequest, parse_historical_request
from ibconn.pacing.lanes import Lanes, Queued


def item(priority: Priority, msg_id: int = 1, request_id: int | None = None) -> Queued:
    return Queued(f"{msg_id}\0", msg_id, request_id, priority, 1, 0.0, None)


def historical(req_id: int, symbol: str = "AAPL") -> Queued:
    contract = ["0", symbol, "STK", "", "0.0", "", "", "SMART", "", "USD", "", ""]
    fields = ["20", str(req_id), *contract, "0", "", "5 secs", "60 S", "0", "TRADES", "1", "0", ""]
    request = parse_historical_request(fields)
    assert isinstance(request, HistoricalRequest)
    return Queued("20\0", 20, req_id, Priority.HISTORICAL, 1, 0.0, request)


def rules() -> HistoricalRules:
    return HistoricalRules(
        identical_window=15.0, burst_window=2.0, window=600.0, max_bar_seconds=30, backoff=10.0
    )


def test_the_most_urgent_lane_goes_first_and_fifo_within_a_lane() -> None:
    lanes = Lanes()
    data1, order, data2, urgent = (
        item(Priority.DATA),
        item(Priority.ORDER),
        item(Priority.DATA),
        item(Priority.URGENT),
    )
    for queued in (data1, order, data2, urgent):
        lanes.append(queued)
    assert len(lanes) == 4
    picked = []
    while lanes:
        head, ready = lanes.pick(5.0, rules())
        assert head is not None and ready == 5.0
        lanes.remove(head)
        picked.append(head)
    assert picked == [urgent, order, data1, data2]


def test_any_up_to_sees_only_equal_or_more_urgent_messages() -> None:
    lanes = Lanes()
    lanes.append(item(Priority.DATA))
    assert not lanes.any_up_to(Priority.ORDER)
    assert lanes.any_up_to(Priority.DATA)
    assert lanes.any_up_to(Priority.HISTORICAL)


def test_a_held_back_historical_request_lets_a_ready_one_pass_and_names_when() -> None:
    lanes, hist_rules = Lanes(), rules()
    first = historical(1)
    assert first.historical is not None
    hist_rules.record(first.historical, 0.0)
    again = historical(2)  # identical: must wait the identical window
    lanes.append(again)
    assert lanes.pick(1.0, hist_rules) == (None, 15.0)
    other = historical(3, "MSFT")
    lanes.append(other)
    assert lanes.pick(1.0, hist_rules) == (other, 1.0)
    assert lanes.pick(15.0, hist_rules) == (again, 15.0)


def test_withdraw_takes_only_the_matching_messages_in_queue_order() -> None:
    lanes = Lanes()
    keep = item(Priority.DATA, msg_id=9)
    place_a, place_b = item(Priority.ORDER, 3, 7), item(Priority.ORDER, 3, 8)
    for queued in (place_a, keep, place_b):
        lanes.append(queued)
    gone = lanes.withdraw(lambda q: q.msg_id == 3 and q.request_id == 7)
    assert gone == [place_a]
    assert len(lanes) == 2
    assert lanes.withdraw(lambda q: q.msg_id == 3) == [place_b]
    assert lanes.withdraw(lambda q: False) == []
    assert len(lanes) == 1


def test_take_all_empties_every_lane_most_urgent_first_and_counts_per_priority() -> None:
    lanes = Lanes()
    data, critical = item(Priority.DATA), item(Priority.CRITICAL)
    data.queued_at, critical.queued_at = 1.0, 2.0
    lanes.append(data)
    lanes.append(critical)
    assert lanes.depths() == {"urgent": 0, "critical": 1, "order": 0, "data": 1, "historical": 0}
    assert lanes.depth(Priority.DATA) == 1
    assert lanes.oldest() == 1.0
    assert lanes.take_all() == [critical, data]
    assert len(lanes) == 0 and lanes.oldest() is None
