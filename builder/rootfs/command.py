"""Run a host program for the build, streaming its output and keeping the last lines.

``run_captured(argv, env=..., cwd=..., output=...)`` runs ``argv`` with stdin from
/dev/null and stdout and stderr merged; each line goes to ``output`` (a line sink, or
nothing) and the last ``TAIL_LINES`` are returned with the exit status, for the error
message of a failed step. ``Tail`` is that bounded line buffer, also fed from the
runtime's pipe by ``%post``/``%test``. Only starting the program can raise
(``BuildError``); its exit status is the caller's to judge.
"""

from __future__ import annotations

import collections
import subprocess
from collections.abc import Callable, Mapping

from base.errors import BuildError

__all__ = ["run_captured", "Tail", "TAIL_LINES"]

TAIL_LINES = 20


class Tail:
    """Keeps the last lines of a stream while echoing them to a sink."""

    def __init__(self, sink: Callable[[str], None] | None = None, size: int = TAIL_LINES) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.sink = sink

    def feed(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        self.lines.append(line)
        if self.sink is not None:
            self.sink(line)


def run_captured(argv: list[str], *, env: Mapping[str, str] | None, cwd: str | None,
                 output: Callable[[str], None] | None = None) -> tuple[int, list[str]]:
    """Run ``argv``, streaming its merged output to ``output`` (a line sink), keeping the tail."""
    tail = Tail(output)
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise BuildError(f"starting {argv[0]}: {e.strerror}") from e
    assert proc.stdout is not None
    with proc.stdout:
        for raw in proc.stdout:
            tail.feed(raw)
    return proc.wait(), list(tail.lines)
