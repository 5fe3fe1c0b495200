"""base.retry: the back-off a retrying client waits, with the clock and sleep passed in."""

from __future__ import annotations

from base.retry import Backoff


def _delays(backoff, *retry_after):
    tries = backoff.start()
    out = []
    for value in retry_after:
        delay = tries.next_delay(value)
        if delay is None:
            break
        out.append(delay)
    return out


def test_doubling_up_to_the_cap_and_no_more_than_the_attempts():
    assert _delays(Backoff(5, 1.0), *[None] * 9) == [1.0, 2.0, 4.0, 8.0]
    assert _delays(Backoff(9, 10.0, cap=30.0), *[None] * 4) == [10.0, 20.0, 30.0, 30.0]
    assert _delays(Backoff(1, 1.0), None) == []  # one attempt in all: no retry


def test_retry_after_seconds_and_dates_replace_the_doubling():
    clock = lambda: 1_700_000_000.0  # noqa: E731 - 2023-11-14 22:13:20 UTC
    backoff = Backoff(5, 1.0, clock=clock)
    assert _delays(backoff, "3", "Tue, 14 Nov 2023 22:13:27 GMT", "600", "soon") == [3.0, 7.0, 60.0, 8.0]
    assert _delays(Backoff(5, 1.0, retry_after=False), "3") == [1.0]  # a policy may ignore it


def test_sleep_is_the_one_passed_in():
    slept = []
    Backoff(3, 0.5, sleep=slept.append).sleep(0.5)
    assert slept == [0.5]
