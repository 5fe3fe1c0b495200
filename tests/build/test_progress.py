"""Download heartbeats: what a CI log (no terminal) shows while a long pull moves."""

from __future__ import annotations

import threading

from builder.steps.progress import Heartbeat

DIGEST = "sha256:" + "ab" * 32


def test_heartbeat_lines_are_rate_limited_and_completion_is_said_once():
    now = [0.0]
    lines: list[str] = []
    beat = Heartbeat(lines.append, interval=10.0, clock=lambda: now[0])
    beat(DIGEST, 0, 300 << 20)               # first report: a line
    for t, done in ((3.0, 10 << 20), (9.9, 20 << 20)):
        now[0] = t
        beat(DIGEST, done, 300 << 20)        # within 10 s: nothing
    now[0] = 10.5
    beat(DIGEST, 150 << 20, 300 << 20)       # 10 s later: a line
    now[0] = 11.0
    beat(DIGEST, 300 << 20, 300 << 20)       # complete: always a line
    beat(DIGEST, 300 << 20, 300 << 20)       # ...but only once
    beat("library.sif", 5 << 20, 0)          # unknown size, not a digest
    assert lines == ["abababababab: 0.0 MiB of 300.0 MiB", "abababababab: 150.0 MiB of 300.0 MiB",
                     "abababababab: 300.0 MiB done", "library.sif: 5.0 MiB"]


def test_heartbeat_from_many_threads_says_each_completion_once():
    lines: list[str] = []
    beat = Heartbeat(lines.append, interval=3600)
    digests = [f"sha256:{i:064x}" for i in range(8)]

    def work(d: str) -> None:
        for n in range(0, 1001, 50):
            beat(d, n, 1000)
    threads = [threading.Thread(target=work, args=(d,)) for d in digests for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(l for l in lines if l.endswith("done")) == sorted(f"{d[7:19]}: 0.0 MiB done" for d in digests)
    assert len(lines) == 16  # a first line and a completion per blob
