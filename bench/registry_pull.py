#!/usr/bin/env python3
"""Benchmark: build a .simg from a 3-layer ~150 MB image in a loopback registry.

    sbuild   : ``sbuild build --arch amd64 --nohttps docker://REF out.simg`` (the CLI, in a
               fresh process, cold blob cache: pull, metadata, mksquashfs, bundle removal)
    baseline : ``skopeo copy docker://REF oci:DIR`` + ``umoci raw unpack`` + ``mksquashfs``

sbuild packs with its own squashfs writer (``builder.images.sqfs_pack``: gzip level 9
through zlib-ng, all cores); the baseline runs mksquashfs (``pack_command``: gzip at its
default level 9, all cores), as ``apptainer build`` does. Both pull from the same
docker-registry on 127.0.0.1. Runs alternate, each after ``sync`` (the previous run's write-back is not
measured); every run's files are deleted between runs on both sides alike. Prints the
medians, the ratio (target <= 0.80), the fetch-to-rootfs part alone, sbuild's peak RSS
(the sbuild process, packing included) and the load average.

``--fs host`` runs in /var/tmp/sbuild-bench; ``--fs loop`` on a fresh ext4 (with a journal,
the mkfs default) mounted from a file. The difference matters on this kind of machine:
its root ext4 has no journal, and without one the kernel skips inodes deleted in the last
minute or so when allocating new ones (``recently_deleted`` in ext4's ialloc.c), a scan
that makes creating files after mass deletions several times slower for both sides
(``perf`` shows it dominating umoci's unpack).

The image is a debootstrap minbase (``/var/tmp/sbuild-bench/debian-minbase`` or
``minbase`` when another engineer made one, else our own ``registry-minbase``), split in
three gzip layers (usr/share, the rest of usr, everything else without apt's caches),
cached as an OCI layout in ``/var/tmp/sbuild-bench/registry-layout``.

Usage: .venv/bin/python bench/registry_pull.py [--runs N] [--fs host|loop|both]
       (as root; needs network once)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "registry"))
sys.path.insert(0, str(ROOT))

import servers  # noqa: E402

from builder.images import PackOptions  # noqa: E402
from builder.images.squashfs import pack_command  # noqa: E402

BENCH = Path("/var/tmp/sbuild-bench")
LAYOUT = BENCH / "registry-layout"


def minbase() -> Path:
    for name in ("debian-minbase", "minbase", "registry-minbase"):
        p = BENCH / name
        if (p / "usr" / "bin").is_dir() and (p / "etc" / "os-release").exists():
            return p
    own = BENCH / "registry-minbase"
    tmp = BENCH / "registry-minbase.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    print("bench: debootstrap --variant=minbase bookworm (once, ~40 s)", flush=True)
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(tmp), "http://deb.debian.org/debian"],
                   check=True, stdout=subprocess.DEVNULL)
    tmp.rename(own)
    return own


def _layer(root: Path, args: list[str]) -> bytes:
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "--sort=name", "--xattrs", "-cf", "-"]
                           + args, stdout=subprocess.PIPE)
    gz = subprocess.run(["gzip", "-6", "-n"], stdin=tar.stdout, capture_output=True, check=True)
    tar.wait()
    return gz.stdout


def build_layout() -> Path:
    if (LAYOUT / "index.json").exists():
        return LAYOUT
    import hashlib
    import gzip as _gzip
    src = minbase()
    print(f"bench: building the 3-layer image from {src}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="registry-layout.", dir=BENCH))
    blobs = tmp / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": "sha256:" + h, "size": len(data)}

    specs = [["./usr/share"], ["--exclude=./usr/share", "./usr"],
             ["--exclude=./usr", "--exclude=./var/cache/apt/archives/*.deb",
              "--exclude=./var/lib/apt/lists/*", "--exclude=./proc", "--exclude=./sys", "--exclude=./dev", "."]]
    layers, diff_ids = [], []
    for spec in specs:
        blob = _layer(src, spec)
        diff_ids.append("sha256:" + hashlib.sha256(_gzip.decompress(blob)).hexdigest())
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(blob)})
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
                      "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                 "Cmd": ["bash"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(cfg)},
                           "layers": layers}).encode()
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest),
             "annotations": {"org.opencontainers.image.ref.name": "bench"}}
    (tmp / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tmp.rename(LAYOUT)
    return LAYOUT


def _mksquashfs(src: Path, dst: Path) -> None:
    subprocess.run(pack_command(src, dst, PackOptions()), check=True, stdout=subprocess.DEVNULL)


_OURS = r"""
import json, resource, sys, time
import builder.sources.oci.puller as puller
spent = {}
real = puller.fetch_to_rootfs
def timed(*a, **kw):
    t = time.monotonic()
    try:
        return real(*a, **kw)
    finally:
        spent["pull"] = time.monotonic() - t
puller.fetch_to_rootfs = timed  # before the agent imports it
from builder.cli import main
rc = main(["build", "--quiet", "--arch", "amd64", "--nohttps", "--tmpdir", sys.argv[2], sys.argv[1], sys.argv[3]])
hwm = int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
print(json.dumps({"rc": rc, "pull": spent.get("pull", 0.0), "rss_kb": hwm,
                  "rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_ours(ref: str, work: Path) -> dict:
    env = {**os.environ, "SBUILD_CACHEDIR": str(work / "cache")}
    os.sync()
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _OURS, f"docker://{ref}", str(work), str(work / "out.simg")],
                         check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    total = time.monotonic() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result.pop("rc"):
        raise SystemExit(f"sbuild build failed: {out.stderr}")
    return {"total": total, **result, "size": (work / "out.simg").stat().st_size}


def run_baseline(ref: str, work: Path) -> dict:
    os.sync()
    t0 = time.monotonic()
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{work}/oci:bench"],
                   check=True, capture_output=True)
    t1 = time.monotonic()
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{work}/oci:bench", str(work / "rootfs")],
                   check=True, capture_output=True)
    t2 = time.monotonic()
    _mksquashfs(work / "rootfs", work / "base.sqfs")
    t3 = time.monotonic()
    return {"total": t3 - t0, "copy": t1 - t0, "unpack": t2 - t1, "squash": t3 - t2,
            "size": (work / "base.sqfs").stat().st_size}


class _Scratch:
    """Where the runs happen: a directory on the host filesystem, or a fresh journaled
    ext4 mounted from a file (both under /var/tmp/sbuild-bench, removed at the end)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.image: Path | None = None
        self.path = Path(tempfile.mkdtemp(prefix=f"run-{kind}-", dir=BENCH))
        if kind == "loop":
            self.image = self.path.with_suffix(".img")
            subprocess.run(["truncate", "-s", "8G", str(self.image)], check=True)
            subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True)
            subprocess.run(["mount", "-o", "loop", str(self.image), str(self.path)], check=True)

    def close(self) -> None:
        if self.image is not None:
            subprocess.run(["umount", str(self.path)], check=False)
            self.image.unlink(missing_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)


def _fmt(r: dict) -> str:
    return ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items())


def bench(kind: str, ref: str, runs: int) -> dict:
    scratch = _Scratch(kind)
    ours, base = [], []
    load_before = os.getloadavg()
    try:
        for i in range(runs):
            for name, fn, acc in (("sbuild", run_ours, ours), ("baseline", run_baseline, base)):
                work = scratch.path / f"{name}-{i}"
                work.mkdir()
                acc.append(fn(ref, work))
                shutil.rmtree(work)
                print(f"[{kind}] run {i} {name}: {_fmt(acc[-1])}", flush=True)
    finally:
        scratch.close()
    med = statistics.median
    t_ours, t_base = med(r["total"] for r in ours), med(r["total"] for r in base)
    p_ours, p_base = med(r["pull"] for r in ours), med(r["copy"] + r["unpack"] for r in base)
    return {"kind": kind, "ours": t_ours, "base": t_base, "ratio": t_ours / t_base,
            "pull_ours": p_ours, "pull_base": p_base, "copy": med(r["copy"] for r in base),
            "unpack": med(r["unpack"] for r in base), "squash": med(r["squash"] for r in base),
            "best": (min(r["total"] for r in ours), min(r["total"] for r in base)),
            "rss": max(r["rss_kb"] for r in ours) / 1024,
            "sizes": (ours[-1]["size"], base[-1]["size"]),
            "rss_children": max(r["rss_children_kb"] for r in ours) / 1024,
            "load": (load_before, os.getloadavg())}


def report(r: dict, size: int) -> None:
    fs = "fresh journaled ext4 (loop)" if r["kind"] == "loop" else "host filesystem (/var/tmp)"
    load = " -> ".join("/".join(f"{x:.2f}" for x in la) for la in r["load"])
    print(f"\n== {fs}; image: 3 gzip layers, {size / 1e6:.1f} MB compressed; load average {load}")
    print(f"sbuild build docker:// .simg   median {r['ours']:.2f} s (of which pull {r['pull_ours']:.2f} s)")
    print(f"skopeo+umoci+mksquashfs       median {r['base']:.2f} s (copy {r['copy']:.2f} s, unpack "
          f"{r['unpack']:.2f} s, mksquashfs {r['squash']:.2f} s)")
    print(f"ratio {r['ratio']:.2f} (target <= 0.80); best runs {r['best'][0]:.2f} s vs {r['best'][1]:.2f} s")
    print(f"fetch-to-rootfs alone: sbuild {r['pull_ours']:.2f} s vs skopeo copy + umoci raw unpack "
          f"{r['pull_base']:.2f} s, ratio {r['pull_ours'] / r['pull_base']:.2f}")
    print(f"sbuild peak RSS {r['rss']:.0f} MB (target < 200 MB); children's peak {r['rss_children']:.0f} MB")
    print(f"image size: sbuild {r['sizes'][0] / 1e6:.1f} MB (.simg), mksquashfs {r['sizes'][1] / 1e6:.1f} MB")


def _measure(kinds: tuple[str, ...], runs: int) -> tuple[list[dict], int]:
    """``bench`` for each filesystem kind against one loopback registry; the image size."""
    layout = build_layout()
    size = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir())
    regdir = Path(tempfile.mkdtemp(prefix="registry-", dir=BENCH))
    reg = servers.start_registry(regdir)
    results = []
    try:
        ref = f"{reg.host}/bench/minbase:3layer"
        servers.skopeo_push(layout, "bench", ref)
        for kind in kinds:
            results.append(bench(kind, ref, runs))
    finally:
        reg.stop()
        shutil.rmtree(regdir, ignore_errors=True)
    return results, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fs", choices=("host", "loop", "both"), default="both")
    args = parser.parse_args()
    results, size = _measure(("loop", "host") if args.fs == "both" else (args.fs,), args.runs)
    try:
        import zlib_ng  # noqa: F401
        inflate = "zlib-ng"
    except ImportError:
        inflate = "zlib"
    print(f"\n(gzip layers inflated with {inflate})")
    for r in results:
        report(r, size)
    return 0


def run(quick: bool) -> list[dict]:
    """For ``python -m bench``: the host filesystem only, medians of 3 runs (quick: 2)."""
    if os.geteuid() != 0:
        raise RuntimeError("needs root (debootstrap once, the registry's files)")
    results, size = _measure(("host",), 2 if quick else 3)
    rows = []
    for r in results:
        rows.append({"name": f"build .simg from docker:// (3 gzip layers, {size / 1e6:.0f} MB, loopback registry)",
                     "sbuild_s": r["ours"], "alternative": "skopeo copy + umoci raw unpack + mksquashfs",
                     "alternative_s": r["base"], "ratio": r["ratio"],
                     "notes": f"target ≤ 0.80; sbuild peak RSS {r['rss']:.0f} MB"})
        rows.append({"name": "  of which: fetch to a rootfs", "sbuild_s": r["pull_ours"],
                     "alternative": "skopeo copy + umoci raw unpack", "alternative_s": r["pull_base"],
                     "ratio": r["pull_ours"] / r["pull_base"], "notes": "pull and unpack only"})
    return rows


if __name__ == "__main__":
    sys.exit(main())
