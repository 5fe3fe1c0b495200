"""Retrying with exponential back-off: how many attempts, and how long to wait before each.

``Backoff(attempts, first, ...)`` is the policy: at most ``attempts`` tries in all; before
retry *n* (1, 2, …) it waits ``first * 2 ** (n - 1)`` seconds, at most ``cap``. With
``retry_after`` on, a server's ``Retry-After`` (seconds, or an HTTP date) replaces the
doubling, also at most ``cap``. ``statuses`` are the HTTP answers worth another try.
``sleep`` and ``clock`` (the wall clock, for a ``Retry-After`` date) are passed in, so a
test waits no real time.

One request counts its own attempts: ``tries = backoff.start()``; after a failure,
``delay = tries.next_delay(retry_after)`` is the wait before the next attempt, or ``None``
when none is left (give up); then ``backoff.sleep(delay)``. The caller decides what is
worth retrying (a request whose body cannot be sent again is not).

Only the standard library is imported (``email.utils`` when a date is parsed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from base.records import Frozen

__all__ = ["Backoff", "Attempts", "TRANSIENT_STATUSES"]

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


class Backoff(Frozen):
    """A retry policy; see the module docstring."""

    __slots__ = _fields = ("attempts", "first", "cap", "statuses", "retry_after", "sleep", "clock")
    attempts: int
    first: float
    cap: float
    statuses: frozenset[int]
    retry_after: bool
    sleep: Callable[[float], None]
    clock: Callable[[], float]

    def __init__(self, attempts: int, first: float, *, cap: float = 60.0,
                 statuses: Collection[int] = TRANSIENT_STATUSES, retry_after: bool = True,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time) -> None:
        self._set(attempts, first, cap, frozenset(statuses), retry_after, sleep, clock)

    def start(self) -> Attempts:
        """The attempt count of one request."""
        return Attempts(self)

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (from 1)."""
        if retry_after and self.retry_after:
            try:
                return max(0.0, min(float(retry_after), self.cap))
            except ValueError:
                import email.utils

                try:
                    when = email.utils.parsedate_to_datetime(retry_after)
                except (TypeError, ValueError):
                    when = None
                if when is not None:
                    return max(0.0, min(when.timestamp() - self.clock(), self.cap))
        return min(self.first * 2 ** (retry - 1), self.cap)


class Attempts:
    """How many retries one request has made under a ``Backoff``."""

    __slots__ = ("backoff", "retries")

    def __init__(self, backoff: Backoff) -> None:
        self.backoff, self.retries = backoff, 0

    def next_delay(self, retry_after: str | None = None) -> float | None:
        """The wait before the next attempt, counting it; ``None`` when the policy allows no more."""
        if self.retries + 1 >= self.backoff.attempts:
            return None
        self.retries += 1
        return self.backoff.delay(self.retries, retry_after)
