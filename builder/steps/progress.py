"""Where the pipeline reports progress: a sink passed in by the caller (STYLE 15).

``Progress`` is the interface and the default: step lines go to the ``sbuild.build`` log
at INFO, section output is dropped. The pipeline calls ``begin(total)`` once with the
number of steps it will run, ``step(text)`` as each starts, ``output(line)`` for each line
a section prints, and ``end()`` when it is done (also after a failure).

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
from typing import TextIO

__all__ = ["Progress", "LineProgress", "BarProgress"]

log = logging.getLogger("sbuild.build")


class Progress:
    def begin(self, total: int) -> None:
        """The build will run ``total`` steps."""

    def step(self, text: str) -> None:
        """A step starts (e.g. ``[stage 1] %post``)."""
        log.info("%s", text)

    def output(self, line: str) -> None:
        """One line a section printed."""

    def end(self) -> None:
        """The build is over (successfully or not)."""


class LineProgress(Progress):
    """Step lines through the log; section output to ``stream`` unless ``echo`` is false."""

    def __init__(self, stream: TextIO, *, echo: bool = True) -> None:
        self.stream = stream
        self.echo = echo

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
                        bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} [{elapsed}]", **sized)
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

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None
