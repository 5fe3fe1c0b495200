#!/usr/bin/env python3
"""Benchmark: pull a 3-layer ~150 MB image from a loopback registry and squash it.

    sbuild   : builder.sources.oci.fetch_to_rootfs (cold cache) + mksquashfs
    baseline : skopeo copy docker://... oci:DIR  +  umoci raw unpack  +  mksquashfs

Both run in the same session against the same docker-registry on 127.0.0.1, with the
same mksquashfs command; runs alternate, the median of each is reported with the ratio
(target <= 0.8) and sbuild's peak RSS (Python process; mksquashfs reported apart).

The image is a debootstrap minbase (``/var/tmp/sbuild-bench/debian-minbase`` or
``minbase`` when another engineer made one, else our own ``registry-minbase``), split in
three gzip layers (usr/share, the rest of usr, everything else without apt's caches),
cached as an OCI layout in ``/var/tmp/sbuild-bench/registry-layout``.

Usage: .venv/bin/python bench/registry_pull.py [--runs N]   (as root; needs network once)
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

BENCH = Path("/var/tmp/sbuild-bench")
LAYOUT = BENCH / "registry-layout"
MKSQUASHFS = ["mksquashfs", "{src}", "{dst}", "-noappend", "-comp", "gzip", "-quiet", "-no-progress"]


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
    subprocess.run([a.format(src=src, dst=dst) for a in MKSQUASHFS], check=True, stdout=subprocess.DEVNULL)


_OURS = r"""
import resource, sys, time, json, subprocess
from pathlib import Path
from builder.sources.oci import fetch_to_rootfs, FetchOptions, parse_platform
ref, rootfs, cache, out, mk = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
t0 = time.monotonic()
fetch_to_rootfs(ref, rootfs, FetchOptions(cache_dir=cache, platform=parse_platform("amd64"), nohttps=True))
t1 = time.monotonic()
rss_pull = int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
subprocess.run([a.format(src=rootfs, dst=out) for a in mk], check=True, stdout=subprocess.DEVNULL)
t2 = time.monotonic()
print(json.dumps({"pull": t1 - t0, "squash": t2 - t1,
                  "rss_pull_kb": rss_pull,
                  "rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def run_ours(ref: str, work: Path) -> dict:
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _OURS, ref, str(work / "rootfs"), str(work / "cache"),
                          str(work / "ours.sqfs"), json.dumps(MKSQUASHFS)],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["total"] = time.monotonic() - t0
    return result


def run_baseline(ref: str, work: Path) -> dict:
    t0 = time.monotonic()
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{work}/oci:bench"],
                   check=True, capture_output=True)
    t1 = time.monotonic()
    subprocess.run(["umoci", "raw", "unpack", "--image", f"{work}/oci:bench", str(work / "rootfs")],
                   check=True, capture_output=True)
    t2 = time.monotonic()
    _mksquashfs(work / "rootfs", work / "base.sqfs")
    t3 = time.monotonic()
    return {"copy": t1 - t0, "unpack": t2 - t1, "squash": t3 - t2, "total": t3 - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    layout = build_layout()
    size = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir())
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH))
    reg = servers.start_registry(scratch / "registry")
    try:
        servers.skopeo_push(layout, "bench", f"{reg.host}/bench/minbase:3layer")
        ref = f"{reg.host}/bench/minbase:3layer"
        ours, base = [], []
        for i in range(args.runs):
            for name, fn, acc in (("sbuild", run_ours, ours), ("baseline", run_baseline, base)):
                work = scratch / f"{name}-{i}"
                work.mkdir()
                acc.append(fn(("docker://" if name == "sbuild" else "") + ref, work))
                shutil.rmtree(work)
                print(f"run {i} {name}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                     for k, v in acc[-1].items()), flush=True)
        t_ours = statistics.median(r["total"] for r in ours)
        t_base = statistics.median(r["total"] for r in base)
        rss = max(r["rss_pull_kb"] for r in ours) / 1024
        print(f"\nimage: 3 gzip layers, {size / 1e6:.1f} MB compressed")
        print(f"sbuild pull+mksquashfs  median {t_ours:.2f} s (pull {statistics.median(r['pull'] for r in ours):.2f} s)")
        print(f"skopeo+umoci+mksquashfs median {t_base:.2f} s "
              f"(copy {statistics.median(r['copy'] for r in base):.2f} s, "
              f"unpack {statistics.median(r['unpack'] for r in base):.2f} s)")
        print(f"ratio {t_ours / t_base:.2f} (target <= 0.80); best runs {min(r['total'] for r in ours):.2f} s "
              f"vs {min(r['total'] for r in base):.2f} s")
        p_ours = statistics.median(r["pull"] for r in ours)
        p_base = statistics.median(r["copy"] + r["unpack"] for r in base)
        print(f"fetch-to-rootfs alone: sbuild {p_ours:.2f} s vs skopeo copy + umoci raw unpack {p_base:.2f} s, "
              f"ratio {p_ours / p_base:.2f}")
        print(f"sbuild peak RSS during pull {rss:.0f} MB (target < 200 MB); "
              f"mksquashfs child peak {max(r['rss_children_kb'] for r in ours) / 1024:.0f} MB")
    finally:
        reg.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
