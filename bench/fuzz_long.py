"""Long fuzz run: the targets of ``tests/fuzz/targets.py`` (recipe parser, SIF reader, squashfs
reader, image reference parser, layer applier) with thousands of random examples each, beyond
the CI's fixed derandomized budget. A target holds when only sbuild's own errors escape.

For the two image readers the same run also times the real tool on a sample of the same
inputs: ``siftool list`` for SIF, ``unsquashfs -lls`` for squashfs (each reads the header and
the tree, as ``probe`` + ``open_tree`` do); ``sbuild_s`` and ``alternative_s`` are seconds per
100 of those inputs and ``ratio`` is sbuild's over the tool's. The other targets have no
alternative (None).

``run(quick)`` returns one dict per target (name, sbuild_s, alternative, alternative_s, ratio,
notes); quick is 300 examples per target, else 5000 (about 10 minutes on 2 cores).

Usage: .venv/bin/python -m bench.fuzz_long [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

_TOOLS = {"SIF reader": ("siftool", ["siftool", "list"], ".sif"),
          "squashfs reader": ("unsquashfs", ["unsquashfs", "-lls"], ".sqfs")}
_SAMPLE = 200


def _timed(check, inputs: list) -> float:
    started = time.perf_counter()
    for data in inputs:
        check(data)
    return (time.perf_counter() - started) * 100 / max(1, len(inputs))


def _tool_time(argv: list[str], suffix: str, inputs: list[bytes]) -> float:
    work = Path(tempfile.mkdtemp(prefix="sbuild-fuzz-bench-"))
    try:
        paths = []
        for i, data in enumerate(inputs):
            p = work / f"{i}{suffix}"
            p.write_bytes(data)
            paths.append(p)
        started = time.perf_counter()
        for p in paths:
            subprocess.run([*argv, str(p)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        return (time.perf_counter() - started) * 100 / max(1, len(paths))
    finally:
        shutil.rmtree(work)


def _fuzz(name: str, examples: int) -> dict:
    from hypothesis import HealthCheck, given, settings

    import targets

    strategy, check = targets.FUZZERS[name]
    seen: list = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(strategy())
    def fuzz(data):
        if len(seen) < _SAMPLE:
            seen.append(data)
        check(data)

    started = time.perf_counter()
    escaped = ""
    try:
        fuzz()
    except Exception as e:  # noqa: BLE001 - a target that did not hold: reported, not raised
        escaped = f"{type(e).__name__}: {str(e)[:300]}"
    total = time.perf_counter() - started
    row = {"name": f"fuzz {name}", "sbuild_s": round(_timed(check, seen), 4), "alternative": None,
           "alternative_s": None, "ratio": None,
           "notes": f"{examples} examples in {total:.1f} s: " + (f"ESCAPED {escaped}" if escaped else
                                                                 "only sbuild errors escaped")}
    tool = _TOOLS.get(name)
    if tool and shutil.which(tool[0]):
        alt = _tool_time(tool[1], tool[2], seen)
        row.update(alternative=" ".join(tool[1]), alternative_s=round(alt, 4),
                   ratio=round(row["sbuild_s"] / alt, 3) if alt else None)
        row["notes"] += (f"; seconds per 100 of the same {len(seen)} inputs, sbuild in process, "
                         "the tool one process per input")
    return row


def run(quick: bool) -> list[dict]:
    """One row per fuzz target (see the module docstring)."""
    import targets

    examples = 300 if quick else 5000
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    return [_fuzz(name, examples) for name in sorted(targets.FUZZERS)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 examples per target instead of 5000")
    rows = run(ap.parse_args(argv).quick)
    for row in rows:
        print(json.dumps(row))
    return 0 if all("ESCAPED" not in r["notes"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
