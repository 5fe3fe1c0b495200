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


def main() -> int:
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    files = sorted(str(p) for p in corpus.iterdir())
    sbuild = Path(sys.executable).with_name("sbuild")
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([str(sbuild), "check", "--json", "--quiet", *files],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"sbuild check --json over {len(files)} recipes: median {median:.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}); {1000 * median / len(files):.2f} ms per file; "
          f"target < 2 s: {'met' if median < 2 else 'MISSED'}")
    return 0 if median < 2 else 1


if __name__ == "__main__":
    sys.exit(main())
