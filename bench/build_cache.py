"""Benchmark: the build cache (issue 10) against building without it, same run.

Workloads (a busybox recipe whose ``%post`` sleeps — 20 s, 2 s with ``quick`` — and writes
32 MiB of incompressible data, so packing is not free either):

- ``cold build, cache on vs --disable-cache``: the cache's overhead on a cold build
  (packing and storing two checkpoints and the image); must be ≤ 1.05.
- ``unchanged rebuild vs cold``: must be ≤ 0.05.
- ``%runscript/%labels/%environment/%test changed vs cold``: ≤ 0.1.
- ``fresh cache dir + --cache-from registry vs cold``: a second "runner" with an empty
  cache and Debian's docker-registry on loopback; ≤ 0.2, no ``%post`` run, same bytes.

Each timing is the median of several runs (one with ``quick``) of the real CLI
(``.venv/bin/sbuild``) in fresh directories. ``run(quick)`` returns one dict per workload:
name, sbuild_s, alternative_s, ratio, notes; ``python -m bench.build_cache [--quick]``
prints them as a table. Needs root or a user with subordinate ids, busybox-static and
(for the remote workload) docker-registry; a missing tool skips that workload with a note.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["run", "main"]

ROOT = Path(__file__).resolve().parents[1]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
RECIPE = """\
Bootstrap: busybox
MirrorURL: file:///bin/busybox

%post
    echo ran-post
    head -c 33554432 /dev/urandom > /data
    sleep {sleep}

%runscript
    echo {word}

%labels
    Word {word}
"""


def _build(work: Path, cache: Path, word: str, sleep: int, *extra: str) -> tuple[float, str, bytes]:
    recipe = work / "r.def"
    recipe.write_text(RECIPE.format(sleep=sleep, word=word))
    target = work / f"out-{time.monotonic_ns()}.sif"
    env = {**os.environ, "SBUILD_CACHEDIR": str(cache), "SOURCE_DATE_EPOCH": "1700000000"}
    env.pop("SBUILD_BUILD_CACHE", None)
    t0 = time.monotonic()
    r = subprocess.run([SBUILD, "build", "--cache-explain", *extra, str(recipe), str(target)], env=env,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"sbuild build failed: {r.stderr[-2000:]}")
    data = target.read_bytes()
    target.unlink()
    return took, r.stderr, data


def _median(times: list[float]) -> float:
    return round(statistics.median(times), 3)


def _row(name: str, ours: list[float], alt: list[float], notes: str,
         alternative: str = "sbuild cold build") -> dict:
    s, a = _median(ours), _median(alt)
    return {"name": name, "sbuild_s": s, "alternative": alternative, "alternative_s": a,
            "ratio": round(s / a, 4) if a else None, "notes": notes}


def _local(work: Path, runs: int, sleep: int) -> list[dict]:
    cold, disabled, unchanged, meta = [], [], [], []
    for n in range(runs):
        cache = work / f"cache-{n}"
        t, _, _ = _build(work, work / f"off-{n}", "a", sleep, "--disable-cache")
        disabled.append(t)
        t, _, _ = _build(work, cache, "a", sleep)
        cold.append(t)
        t, err, _ = _build(work, cache, "a", sleep)
        assert "ran-post" not in err
        unchanged.append(t)
        t, err, _ = _build(work, cache, f"b{n}", sleep)
        assert "ran-post" not in err
        meta.append(t)
    return [_row("cold build, cache on vs --disable-cache", cold, disabled, "overhead of recording; must be <= 1.05",
                 "sbuild build --disable-cache"),
            _row("unchanged rebuild vs cold", unchanged, cold, "the packed image is reused; must be <= 0.05"),
            _row("%runscript/%labels changed vs cold", meta, cold, "the %post checkpoint is restored; must be <= 0.1")]


def _remote(work: Path, runs: int, sleep: int) -> list[dict]:
    if shutil.which("docker-registry") is None:
        return [{"name": "fresh cache dir + --cache-from registry vs cold", "sbuild_s": None,
                 "alternative": "sbuild cold build", "alternative_s": None, "ratio": None,
                 "notes": "skipped: docker-registry is not installed"}]
    sys.path.insert(0, str(ROOT / "tests" / "registry"))
    import servers  # the tests' starter of Debian's docker-registry on loopback

    reg = servers.start_registry(work / "registry")
    try:
        cold, remote = [], []
        for n in range(runs):
            ref = f"docker://{reg.host}/bench/cache{n}"
            t, _, first = _build(work, work / f"pusher-{n}", "a", sleep, "--nohttps", "--cache-to", ref)
            cold.append(t)
            t, err, second = _build(work, work / f"runner-{n}", "a", sleep, "--nohttps", "--cache-from", ref)
            assert "ran-post" not in err and first == second, "the second runner ran %post or got other bytes"
            remote.append(t)
    finally:
        reg.stop()
    return [_row("fresh cache dir + --cache-from registry vs cold (+ --cache-to)", remote, cold,
                 "no %post run, same bytes; must be <= 0.2", "sbuild cold build with --cache-to")]


def run(quick: bool = False) -> list[dict]:
    """The workloads' medians (see the module docstring)."""
    runs, sleep = (1, 2) if quick else (3, 20)
    work = Path(tempfile.mkdtemp(prefix="sbuild-bench-cache-"))
    try:
        return _local(work, runs, sleep) + _remote(work, runs, sleep)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    rows = run(quick="--quick" in argv)
    print(f"{'workload':<66} {'sbuild s':>9} {'alt s':>9} {'ratio':>7}  notes")
    for r in rows:
        fmt = (lambda v: f"{v:>9.3f}" if isinstance(v, float) else f"{'-':>9}")
        ratio = f"{r['ratio']:>7.3f}" if r["ratio"] is not None else f"{'-':>7}"
        print(f"{r['name']:<66} {fmt(r['sbuild_s'])} {fmt(r['alternative_s'])} {ratio}  {r['notes']}")
    return rows


if __name__ == "__main__":
    main()
