"""Prefetch's arithmetic: how many messages to hold and when to receive them."""

from __future__ import annotations

from pool.holding.prefetch import LEAD_MAX, NOTHING_WANTED, Prefetch, PrefetchSettings, ReceiveRequest
from pool.holding.round_trip import RoundTrip
from queues.base import BATCH_MAX


def _prefetch(window_s: float = 1.0, maximum: int = 10, slots: int = 2) -> Prefetch:
    return Prefetch(PrefetchSettings(window_s, maximum), slots)


def test_nothing_is_held_without_history() -> None:
    assert _prefetch().allowance() == 0
    assert _prefetch().request(unfilled_slots=2, held=0) == ReceiveRequest(2, 0, 1)


def test_short_jobs_earn_what_the_slots_start_within_the_window() -> None:
    prefetch = _prefetch(slots=2)
    for _ in range(5):
        prefetch.job_ended(0.4)
    assert prefetch.allowance() == 5  # two slots, each starting a job every 0.4 s, for 1 s
    prefetch = _prefetch(slots=2, maximum=3)
    prefetch.job_ended(0.01)
    assert prefetch.allowance() == 3  # never more than --prefetch-max


def test_jobs_longer_than_the_window_earn_nothing() -> None:
    prefetch = _prefetch(slots=8)
    prefetch.job_ended(1.5)
    assert prefetch.allowance() == 0
    prefetch.job_ended(0.1)  # the mean over recent jobs (0.8 s) decides
    assert prefetch.allowance() == 10


def test_recent_jobs_outweigh_old_ones() -> None:
    prefetch = _prefetch()
    for _ in range(50):
        prefetch.job_ended(0.01)
    for _ in range(20):
        prefetch.job_ended(5.0)
    assert prefetch.allowance() == 0


def test_a_window_or_maximum_of_zero_turns_prefetch_off() -> None:
    for prefetch in (_prefetch(window_s=0), _prefetch(maximum=0)):
        prefetch.job_ended(0.01)
        assert prefetch.allowance() == 0


def test_held_messages_count_against_the_allowance() -> None:
    prefetch = _prefetch(slots=2)
    prefetch.job_ended(0.1)  # allowance 10
    assert prefetch.request(unfilled_slots=0, held=4) == ReceiveRequest(0, 6, 5)
    assert prefetch.request(unfilled_slots=0, held=12) == ReceiveRequest(0, 0, 5)


def test_an_idle_slot_is_received_for_at_once_held_messages_in_batches() -> None:
    assert ReceiveRequest(1, 0, 5).count(0) == 1
    assert ReceiveRequest(1, 3, 5).count(0) == 4
    assert ReceiveRequest(0, 3, 5).count(0) == 0  # too few missing to be worth a request
    assert ReceiveRequest(0, 6, 5).count(0) == 6
    assert ReceiveRequest(2, 20, 5).count(0) == BATCH_MAX
    assert NOTHING_WANTED.count(0) == 0


def test_messages_on_their_way_count_as_received() -> None:
    # A receive already brought 6: the idle slot is served, the 1 still missing waits.
    assert ReceiveRequest(1, 6, 5).count(6) == 0
    assert ReceiveRequest(2, 6, 5).count(1) == 7


def test_taken_messages_serve_idle_slots_first() -> None:
    assert ReceiveRequest(2, 6, 5).less(1) == ReceiveRequest(1, 6, 5)
    assert ReceiveRequest(2, 6, 5).less(5) == ReceiveRequest(0, 3, 5)
    assert ReceiveRequest(2, 6, 5).less(12) == ReceiveRequest(0, 0, 5)


def test_two_batches_of_allowance_receive_full_batches() -> None:
    prefetch = _prefetch(slots=2, maximum=20)
    prefetch.job_ended(0.01)  # 200 would start within the window: the maximum, 20
    request = prefetch.request(unfilled_slots=0, held=12)
    assert request == ReceiveRequest(0, 8, BATCH_MAX)
    assert request.count(0) == 0  # 8 missing: the 12 held keep the slots busy; wait for 10
    assert prefetch.request(unfilled_slots=0, held=10).count(0) == BATCH_MAX


def test_a_slow_endpoint_is_asked_ahead_by_one_round_trip() -> None:
    round_trip = RoundTrip()
    prefetch = Prefetch(PrefetchSettings(1.0, 20), 2, round_trip=round_trip.seconds)
    prefetch.job_ended(0.005)  # two slots start 400 jobs a second
    assert prefetch.lead() == 0  # no round trip measured yet
    round_trip.observe("receive", 20.0)  # a long poll says nothing of the round trip
    round_trip.observe("send", 0.03)
    round_trip.observe("delete", 0.03)
    assert round_trip.seconds() == 0.03
    assert prefetch.lead() == 12  # 400 a second start during 30 ms
    assert prefetch.request(unfilled_slots=0, held=5) == ReceiveRequest(0, 20 + 12 - 5, BATCH_MAX)
    round_trip.observe("delete", 1.0)
    round_trip.observe("delete", 1.0)
    assert prefetch.lead() == LEAD_MAX  # never more than two batches ahead


def test_no_lead_where_nothing_is_held() -> None:
    round_trip = RoundTrip()
    round_trip.observe("send", 0.05)
    prefetch = Prefetch(PrefetchSettings(1.0, 20), 2, round_trip=round_trip.seconds)
    assert prefetch.request(unfilled_slots=1, held=0) == ReceiveRequest(1, 0, 1)  # no history
    prefetch.job_ended(5.0)  # jobs longer than the window
    assert prefetch.lead() == 0
