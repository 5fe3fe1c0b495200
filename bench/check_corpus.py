"""How long `sbuild check` takes over the whole real-world corpus, in one process.

Target (issue 2): under 2 s on the 2-core machine, start-up included. Runs the installed
console script as a user would, five times, and prints the median and the per-file cost.

    .venv/bin/python bench/check_corpus.py [CORPUS_DIR]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "conformance" / "corpus" / "files"


def _sbuild_check(files: list[str]) -> float:
    sbuild = Path(sys.executable).with_name("sbuild")
    start = time.perf_counter()
    subprocess.run([str(sbuild), "check", "--json", "--quiet", *files],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


_SPYTHON = """
import sys
from spython.main.parse.parsers import SingularityParser
ok = 0
for f in sys.argv[1:]:
    try:
        SingularityParser(f)
        ok += 1
    except BaseException:
        pass
print(ok)
"""


def _spython_parse(files: list[str], parsed: list[int]) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _SPYTHON, *files], capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - start
    parsed.append(int(out.split()[-1]) if out.split() else 0)
    return elapsed


def main() -> int:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    files = sorted(str(p) for p in corpus.iterdir())
    times = [_sbuild_check(files) for _ in range(5)]
    median = statistics.median(times)
    print(f"sbuild check --json over {len(files)} recipes: median {median:.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}); {1000 * median / len(files):.2f} ms per file; "
          f"target < 2 s: {'met' if median < 2 else 'MISSED'}")
    return 0 if median < 2 else 1


def run(quick: bool) -> list[dict]:
    """For ``python -m bench``: ``sbuild check`` over the corpus against spython's parser
    (the one other Python reader of definition files; it only parses, checks nothing) over
    the same files, each in one fresh process, alternating, medians of 3 (quick) or 7."""
    if not DEFAULT.is_dir():
        raise RuntimeError(f"no corpus at {DEFAULT} (the shared conformance data)")
    files = sorted(str(p) for p in DEFAULT.iterdir())
    ours, theirs, parsed = [], [], []
    for i in range(3 if quick else 7):
        pair = [(ours, _sbuild_check), (theirs, lambda f: _spython_parse(f, parsed))]
        for acc, fn in pair if i % 2 == 0 else reversed(pair):
            acc.append(fn(files))
    a, b = statistics.median(ours), statistics.median(theirs)
    return [{"name": f"check {len(files)} real-world recipes (one process, start-up included)", "sbuild_s": a,
             "alternative": "spython SingularityParser (parse only)", "alternative_s": b, "ratio": a / b,
             "notes": f"target < 2 s; {1000 * a / len(files):.2f} ms per file; sbuild checks every file, "
                      f"spython parses {max(parsed, default=0)} of them (fails on the rest) and checks nothing"}]


if __name__ == "__main__":
    sys.exit(main())
