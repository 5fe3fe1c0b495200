#!/usr/bin/env python3
"""Benchmark: sbuild's image writer/reader against bare mksquashfs/unsquashfs.

Packs a debootstrap minbase sandbox (~200 MB; made once and cached under
/var/tmp/sbuild-bench/minbase, which needs root and deb.debian.org) to .simg and SIF
with ``builder.images.write_image`` (sbuild's own packer, ``builder.images.sqfs_pack``;
``SBUILD_PACKER=mksquashfs`` in the environment is not read here: pass
``--mksquashfs`` to make write_image use mksquashfs too) and to a squashfs with a bare
``mksquashfs`` (gzip, all cores, as sbuild would run it); then unpacks the .simg with
``extract_image`` and the squashfs with a bare ``unsquashfs``. Each measurement is the
median of --runs alternating runs after a warm-up. Prints the times and the ratios (target: <= 1.05).

    .venv/bin/python bench/images_pack.py [--runs 5] [--sandbox DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.images import PackOptions, extract_image, write_image  # noqa: E402
from builder.images.squashfs import pack_command, pack_env  # noqa: E402

CACHE = Path("/var/tmp/sbuild-bench")
MIRROR = "http://deb.debian.org/debian"


def ensure_sandbox(path: Path) -> Path:
    if (path / "usr").is_dir():
        return path
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"making {path} with debootstrap (once)...", flush=True)
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(tmp), MIRROR], check=True,
                   stdout=subprocess.DEVNULL)
    os.rename(tmp, path)
    return path


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()[0])


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children)."""
    os.sync()  # write back the previous run's output (and deletions) outside the timing
    t, c = time.perf_counter(), _cpu()
    fn()
    return time.perf_counter() - t, _cpu() - c


def measure(src: Path, runs: int, mksquashfs: bool = False) -> dict:
    """Wall and CPU medians of each operation (and the image sizes): the alternating runs."""
    work = CACHE / f"work-{os.getpid()}"
    work.mkdir(parents=True)
    opts = PackOptions(packer="mksquashfs" if mksquashfs else "auto")
    try:
        bare_sqfs, simg, sif = work / "bare.sqfs", work / "a.simg", work / "a.sif"
        bare_cmd = pack_command(src, bare_sqfs, opts)
        env = pack_env(opts)

        def bare_pack() -> None:
            subprocess.run(bare_cmd, check=True, env=env, stdout=subprocess.DEVNULL)

        def ours(fmt: str, target: Path):
            return lambda: write_image(src, target, fmt, options=opts, force=True)

        def rm(p: Path) -> None:
            if p.is_dir():
                shutil.rmtree(p)

        def bare_unpack() -> None:
            rm(work / "u1")
            subprocess.run(["unsquashfs", "-no-progress", "-quiet", "-d", str(work / "u1"), str(bare_sqfs)],
                           check=True, stdout=subprocess.DEVNULL)

        def our_unpack() -> None:
            rm(work / "u2")
            extract_image(simg, work / "u2")

        bare_pack(), ours("simg", simg)()  # warm-up: page cache
        times: dict[str, list[tuple[float, float]]] = {
            k: [] for k in ("mksquashfs", "simg", "sif", "unsquashfs", "extract")}
        for i in range(runs):
            pairs = [("mksquashfs", bare_pack), ("simg", ours("simg", simg)), ("sif", ours("sif", sif))]
            for name, fn in pairs if i % 2 == 0 else reversed(pairs):
                times[name].append(timed(fn))
        bare_unpack(), our_unpack()
        for i in range(runs):
            for name, fn in [("unsquashfs", bare_unpack), ("extract", our_unpack)][:: 1 if i % 2 == 0 else -1]:
                rm(work / ("u1" if name == "unsquashfs" else "u2"))
                times[name].append(timed(fn))
        return {"times": times, "bare_cmd": bare_cmd,
                "wall": {k: statistics.median(w for w, _ in v) for k, v in times.items()},
                "cpu": {k: statistics.median(c for _, c in v) for k, v in times.items()},
                "sizes": {k: p.stat().st_size for k, p in (("squashfs", bare_sqfs), ("simg", simg), ("sif", sif))}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


_PAIRS = (("pack   .simg", "simg", "mksquashfs"), ("pack   SIF  ", "sif", "mksquashfs"),
          ("unpack .simg", "extract", "unsquashfs"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sandbox", type=Path, default=CACHE / "minbase")
    ap.add_argument("--mksquashfs", action="store_true", help="write_image packs with mksquashfs too")
    args = ap.parse_args()
    src = ensure_sandbox(args.sandbox)
    print(f"sandbox: {src} ({du(src) / 1e6:.0f} MB), {os.cpu_count()} cores")
    m = measure(src, args.runs, args.mksquashfs)
    print("bare: " + " ".join(m["bare_cmd"]))
    wall, cpu, sizes = m["wall"], m["cpu"], m["sizes"]
    print(f"image sizes: squashfs {sizes['squashfs'] / 1e6:.1f} MB, "
          f".simg {sizes['simg'] / 1e6:.1f} MB, SIF {sizes['sif'] / 1e6:.1f} MB")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    for k, v in m["times"].items():
        print(f"{k:>11}: wall {wall[k]:6.2f} s  cpu {cpu[k]:6.2f} s  "
              f"(wall runs: {', '.join(f'{w:.2f}' for w, _ in v)})")
    for label, ours_key, bare_key in _PAIRS:
        print(f"{label} / {bare_key:<10}: wall {wall[ours_key] / wall[bare_key]:.3f}  "
              f"cpu {cpu[ours_key] / cpu[bare_key]:.3f}  (target <= 1.05)")
    return 0


def run(quick: bool) -> list[dict]:
    """For ``python -m bench``: the three comparisons, wall-clock medians (3 runs quick, else 5)."""
    src = ensure_sandbox(CACHE / "minbase")
    m = measure(src, 3 if quick else 5)
    size = du(src) / 1e6
    names = {"simg": f"pack a debootstrap minbase ({size:.0f} MB) to .simg",
             "sif": f"pack a debootstrap minbase ({size:.0f} MB) to SIF",
             "extract": "unpack that .simg to a directory"}
    rows = []
    for _, ours_key, bare_key in _PAIRS:
        w, c = m["wall"], m["cpu"]
        alt = "mksquashfs -comp gzip (all cores)" if bare_key == "mksquashfs" else "unsquashfs"
        rows.append({"name": names[ours_key], "sbuild_s": w[ours_key], "alternative": alt,
                     "alternative_s": w[bare_key], "ratio": w[ours_key] / w[bare_key],
                     "notes": f"CPU ratio {c[ours_key] / c[bare_key]:.2f}; target ≤ 1.05",
                     "runs": len(m["times"][ours_key])})
    return rows


if __name__ == "__main__":
    sys.exit(main())
