#!/usr/bin/env python3
"""Benchmark: repacking a rootfs after one line was added to ``%post``, with sbuild's block
cache (``builder.images.blockcache``), against a cold pack and against mksquashfs.

The tree is a copy of the debootstrap minbase sandbox ``bench/images_pack.py`` makes
(~200 MB, /var/tmp/sbuild-bench/minbase). Each run, in alternating order: pack it with an
empty block cache (cold: every block compressed and stored) and with no cache
(``--disable-cache``); then do what one more line at the end of ``%post`` does
(``echo … >> /etc/profile`` and a new file in /etc) and, alternating again, pack it with the
now warm cache and with ``mksquashfs -comp gzip`` on all cores (what Apptainer runs: it
repacks everything). The warm image must be byte-identical to an uncached pack of the same
tree (same ``SOURCE_DATE_EPOCH``). Issue 10's target: warm ≤ 0.3× cold.

    .venv/bin/python bench/pack_cache.py [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.images_pack import CACHE, du, ensure_sandbox, timed  # noqa: E402
from builder.images.squashfs import PackOptions, pack, pack_command, pack_env  # noqa: E402

EPOCH = 1700000000


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _post_line(tree: Path, i: int) -> None:
    """What ``echo "export RUN=i" >> /etc/profile; date > /etc/built-i`` would leave."""
    with open(tree / "etc" / "profile", "a") as fh:
        fh.write(f"export BENCH_RUN={i}\n")
    (tree / "etc" / f"bench-built-{i}").write_text(f"run {i}\n")


def measure(src: Path, runs: int) -> dict[str, list[float]]:
    """Wall seconds per run (CPU seconds too, ``*_cpu``) of: cold (empty cache) and uncached packs, in
    alternating order; then, after the %post line, warm and mksquashfs packs, alternating."""
    work = Path(tempfile.mkdtemp(prefix="pack-cache-", dir=CACHE))
    try:
        tree = work / "tree"
        subprocess.run(["cp", "-a", str(src), str(tree)], check=True)
        times: dict[str, list[float]] = {k: [] for k in ("cold", "uncached", "warm", "mksquashfs", "cold_cpu",
                                                         "uncached_cpu")}
        plain = PackOptions(source_date_epoch=EPOCH)
        for i in range(runs):
            # a new directory each run, all removed at the end: on an ext4 without a journal,
            # creating files just after deleting many is slower (see registry_pull.py)
            cached = PackOptions(source_date_epoch=EPOCH, block_cache=str(work / f"cache-{i}"))
            first = [("cold", lambda: pack(tree, work / "cold.sqfs", cached)),
                     ("uncached", lambda: pack(tree, work / "plain.sqfs", plain))]
            then = [("warm", lambda: pack(tree, work / "warm.sqfs", cached)),
                    ("mksquashfs", lambda: subprocess.run(pack_command(tree, work / "m.sqfs", plain), check=True,
                                                          env=pack_env(plain), stdout=subprocess.DEVNULL))]
            for steps in (first, then):
                if steps is then:
                    _post_line(tree, i)
                for name, fn in steps if i % 2 == 0 else reversed(steps):
                    wall, cpu = timed(fn)
                    times[name].append(wall)
                    if name + "_cpu" in times:
                        times[name + "_cpu"].append(cpu)
            pack(tree, work / "plain.sqfs", plain)  # the changed tree without the cache: not timed
            if _digest(work / "warm.sqfs") != _digest(work / "plain.sqfs"):
                raise AssertionError("the warm pack's image differs from the uncached pack's")
        return times
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(quick: bool) -> list[dict]:
    """For ``python -m bench``: medians of 3 runs (quick) or 5."""
    src = ensure_sandbox(CACHE / "minbase")
    t = {k: statistics.median(v) for k, v in measure(src, 3 if quick else 5).items()}
    size = f"{du(src) / 1e6:.0f} MB"
    same = "image byte-identical to the uncached pack"
    return [
        {"name": f"repack a minbase ({size}) after one line added to %post, warm block cache",
         "sbuild_s": t["warm"], "alternative": "sbuild cold pack (empty block cache)", "alternative_s": t["cold"],
         "ratio": t["warm"] / t["cold"], "notes": f"target ≤ 0.3; {same}"},
        {"name": "the same repack", "sbuild_s": t["warm"], "alternative": "mksquashfs -comp gzip (repacks all)",
         "alternative_s": t["mksquashfs"], "ratio": t["warm"] / t["mksquashfs"], "notes": same},
        {"name": f"cold pack of the minbase ({size}), filling the block cache", "sbuild_s": t["cold"],
         "alternative": "sbuild pack with --disable-cache", "alternative_s": t["uncached"],
         "ratio": t["cold"] / t["uncached"],
         "notes": f"what the cache costs when it holds nothing; CPU ratio {t['cold_cpu'] / t['uncached_cpu']:.2f}"},
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    src = ensure_sandbox(CACHE / "minbase")
    times = measure(src, args.runs)
    for k, v in times.items():
        print(f"{k:>10}: median {statistics.median(v):6.2f} s  (runs: {', '.join(f'{x:.2f}' for x in v)})")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"warm / cold = {med['warm'] / med['cold']:.3f} (target <= 0.3); warm / mksquashfs = "
          f"{med['warm'] / med['mksquashfs']:.3f}; cold / uncached = {med['cold'] / med['uncached']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
