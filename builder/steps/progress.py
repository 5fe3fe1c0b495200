"""Where the pipeline reports progress: a sink passed in by the caller (STYLE 15).

``Progress`` is the interface and the default: step lines go to the ``sbuild.build`` log
at INFO, section output is dropped. The pipeline calls ``begin(total)`` once with the
number of steps it will run, ``step(text)`` as each starts, ``output(line)`` for each line
a section prints, and ``end()`` when it is done (also after a failure).

Agents that download report ``transfer(what, done, total)`` (bytes of one blob or image,
from their download threads): without a terminal that becomes a ``Heartbeat`` line per
blob at most every ``HEARTBEAT`` seconds and when it completes, so that a CI log shows a
long pull moving; on a terminal, the bar's postfix.

The command picks one of two sinks, both writing to a stream it passes in:

- ``LineProgress``: plain step lines (through the log) and section output as it comes;
  for pipes, files and CI logs.
- ``BarProgress``: a tqdm bar on a terminal, its description the current step; section
  output and log messages are written above the bar (``tqdm.write``), so it stays whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "LineProgress", "BarProgress", "Heartbeat", "HEARTBEAT"]

log = logging.getLogger("sbuild.build")
HEARTBEAT = 10.0  # seconds between two lines about one download, at least


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class Heartbeat:
    """A transfer sink that writes ``what: done of total`` through ``write``: on a blob's
    first report, then at most every ``interval`` seconds, and once when it completes.
    Thread-safe (download threads call it)."""

    def __init__(self, write: Callable[[str], None], interval: float = HEARTBEAT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.clock = write, interval, clock
        self._last: dict[str, float] = {}
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, what: str, done: int, total: int) -> None:
        name = what.partition(":")[2][:12] if what.startswith("sha256:") else what
        with self._lock:
            if what in self._done:
                return
            now = self.clock()
            finished = bool(total) and done >= total
            if finished:
                self._done.add(what)
                line = f"{name}: {_mib(total)} done"
            elif what not in self._last or now - self._last[what] >= self.interval:
                line = f"{name}: {_mib(done)}" + (f" of {_mib(total)}" if total else "")
            else:
                return
            self._last[what] = now
        self.write(line)


class Progress:
    def begin(self, total: int) -> None:
        """The build will run ``total`` steps."""

    def step(self, text: str) -> None:
        """A step starts (e.g. ``[stage 1] %post``)."""
        log.info("%s", text)

    def output(self, line: str) -> None:
        """One line a section printed."""

    def transfer(self, what: str, done: int, total: int) -> None:
        """A download moved: ``done`` of ``total`` bytes (0: unknown) of ``what`` (a digest)."""

    def end(self) -> None:
        """The build is over (successfully or not)."""


class LineProgress(Progress):
    """Step lines through the log; section output to ``stream`` unless ``echo`` is false."""

    def __init__(self, stream: TextIO, *, echo: bool = True) -> None:
        self.stream = stream
        self.echo = echo
        self._heartbeat = Heartbeat(lambda line: log.info("  %s", line))

    def transfer(self, what: str, done: int, total: int) -> None:
        if self.echo:
            self._heartbeat(what, done, total)

    def output(self, line: str) -> None:
        if self.echo:
            print(line, file=self.stream, flush=True)


class BarProgress(Progress):
    """A tqdm bar on ``stream`` (a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar = None
        self._started = False
        self._room = 48
        self._redirect: contextlib.ExitStack | None = None
        self._transfers: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def begin(self, total: int) -> None:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 0
        sized = {"dynamic_ncols": True} if width else {"ncols": 80}  # a terminal that reports no size
        self._room = max(10, (width or 80) - 32)  # keep the bar and its counter visible
        self.bar = tqdm(total=total, file=self.stream, unit="step", leave=False,
                        bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]", **sized)
        self._redirect = contextlib.ExitStack()
        self._redirect.enter_context(logging_redirect_tqdm(loggers=[logging.getLogger("sbuild")]))

    def step(self, text: str) -> None:
        if self.bar is None:
            log.info("%s", text)
            return
        if self._started:
            self.bar.update(1)
        self._started = True
        if len(text) > self._room:
            text = "…" + text[-(self._room - 1):]
        self.bar.set_description_str(text)

    def output(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=self.stream)

    def transfer(self, what: str, done: int, total: int) -> None:
        with self._lock:
            self._transfers[what] = (done, total)
            got = sum(d for d, _ in self._transfers.values())
            of = sum(t for _, t in self._transfers.values())
            if self.bar is not None:
                self.bar.set_postfix_str(f"{_mib(got)} of {_mib(of)}" if of else _mib(got))

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None
