"""Why a message was dead-lettered, read from its headers (protocol.dead): rpcfleet's own header
first, else the broker's newest `x-death`, not counting a stay in a gateway's parking queue."""

from __future__ import annotations

from protocol import names
from protocol.dead import dead_reason


def test_the_broker_reason_is_its_newest_death() -> None:
    headers = {"x-death": [{"queue": "rpcfleet.pool.basic", "reason": "delivery_limit"},
                           {"queue": "rpcfleet.pool.basic", "reason": "rejected"}]}
    assert dead_reason(headers)[0] == "broker:delivery_limit"


def test_expiring_back_from_a_parking_queue_is_not_why_it_died() -> None:
    parked = names.parking_queue(names.dead_events_queue("s1"))
    headers = {"x-death": [{"queue": parked, "reason": "expired"},
                           {"queue": "rpcfleet.pool.basic", "reason": "delivery_limit"}]}
    assert dead_reason(headers)[0] == "broker:delivery_limit"


def test_our_own_header_wins() -> None:
    headers = {names.HEADER_DEAD_REASON: "expired", names.HEADER_DEAD_DETAIL: "past deadline",
               "x-death": [{"queue": "rpcfleet.pool.basic", "reason": "rejected"}]}
    assert dead_reason(headers) == ("expired", "past deadline")
