"""``python -m bench [--quick] [--only NAME ...]``: run every benchmark in ``bench/`` and write
``bench/results.json``, ``docs/PERFORMANCE.md`` and ``docs/performance.png`` (see
``bench.harness``). Run from the checkout after ``./setup.sh``, as root (several benchmarks
need it: debootstrap once, mounts, the unprivileged-user case)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench  # noqa: E402
from bench import harness  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs of each (a few minutes in all)")
    ap.add_argument("--only", action="append", default=[], metavar="MODULE",
                    help="run only these modules (the other modules' rows in --results are kept)")
    ap.add_argument("--list", action="store_true", help="list the benchmark modules and exit")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    ap.add_argument("--page", type=Path, default=ROOT / "docs" / "PERFORMANCE.md")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "performance.png")
    args = ap.parse_args(argv)
    found = harness.discover(bench)
    if args.list:
        for name, _ in found:
            print(name)
        return 0
    if args.only:
        unknown = sorted(set(args.only) - {n for n, _ in found})
        if unknown:
            ap.error(f"no benchmark module {unknown[0]!r} (have: {', '.join(n for n, _ in found)})")
        found = [(n, r) for n, r in found if n in args.only]
    started, at_start = time.time(), harness.machine()
    rows = harness.run_all(found, args.quick, log=lambda m: print(m, file=sys.stderr, flush=True))
    modules = harness.about(found)
    if args.only and args.results.exists():  # keep the other modules' rows (each says when it ran)
        old = json.loads(args.results.read_text())
        rows = harness.merged(old, rows, args.only)
        modules = {**old.get("modules", {}), **modules}
    harness.write_outputs(rows, started, at_start, args.quick, results=args.results, page=args.page,
                          picture=args.plot, modules=modules)
    for r in rows:
        print(f"{r['name']}: ratio {harness.fmt_ratio(r['ratio'])} ({r['notes']})")
    print(f"wrote {args.results}, {args.page}, {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
