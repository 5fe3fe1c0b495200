#!/usr/bin/env python3
"""Benchmark: ``sbuild sign`` and ``sbuild verify`` of a large SIF against ``sha256sum`` of the
same file, in the same run (the target: no slower than sha256sum + 20 %, peak memory under
100 MB, i.e. the image is streamed, never loaded).

The image is one squashfs-typed partition of pseudo-random bytes (1 GiB; 128 MiB with
``quick``), signed with a DSSE Ed25519 key. The file is read once before timing so that both
sides hash from the page cache; each side runs as its own process and its peak RSS is read
from ``wait4``. Between repetitions the image's header and descriptor table are restored and
the signature cut off, so every ``sign`` and ``verify`` sees one signature.

``run(quick)`` returns rows (name, sbuild_s, alternative, alternative_s, ratio, notes);
``python -m bench.sign_verify [--quick]`` prints them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")

__all__ = ["run", "make_image", "timed"]


def make_image(path: Path, size: int) -> None:
    """A SIF whose one partition is ``size`` pseudo-random bytes."""
    sys.path.insert(0, str(ROOT))
    from builder.images.sif import DATA_PARTITION, FS_SQUASH, PART_PRIMSYS, SifObject, write_sif

    part = path.with_suffix(".part")
    block = os.urandom(1 << 20)
    with open(part, "wb") as fh:
        for i in range(size >> 20):
            fh.write(block[i % 251:] + block[:i % 251])
    with open(path, "wb") as fh:
        write_sif(fh, [SifObject(DATA_PARTITION, str(part), fstype=FS_SQUASH, parttype=PART_PRIMSYS, arch="amd64")])
    part.unlink()


def _key(base: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    priv, pub = base / "key.pem", base / "key.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


# A fresh small interpreter starts the command and reports its peak RSS: the peak the kernel
# records for a child of this (possibly large: pytest's) process includes this process's own
# pages up to the child's exec, so measuring our own child would report our size, not sbuild's.
_MEASURE = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stdout.write("\\n" + str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def timed(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-S", "-c", _MEASURE, *map(str, argv)], capture_output=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({proc.returncode}): {err[-400:]}")
    return elapsed, int(proc.stdout.decode().split()[-1]) / 1024


def _restore(path: Path, head: bytes, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.write(head)
        fh.truncate(size)


def run(quick: bool = False) -> list[dict]:
    size = (128 if quick else 1024) << 20
    reps = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="sbbench-sign") as tmp:
        base = Path(tmp)
        image = base / "big.sif"
        make_image(image, size)
        priv, pub = _key(base)
        with open(image, "rb") as fh:
            head = fh.read(65536)
        length = image.stat().st_size
        timed(["sha256sum", str(image)])  # warm the page cache
        times: dict[str, list[float]] = {"sha": [], "sign": [], "verify": []}
        rss: dict[str, float] = {"sign": 0.0, "verify": 0.0}
        for _ in range(reps):  # interleaved, so that machine load hits all sides alike
            times["sha"].append(timed(["sha256sum", str(image)])[0])
            for what, argv in (("sign", [SBUILD, "sign", "--key", str(priv), str(image)]),
                               ("verify", [SBUILD, "verify", "--key", str(pub), str(image)])):
                seconds, peak = timed(argv)
                times[what].append(seconds)
                rss[what] = max(rss[what], peak)
            _restore(image, head, length)
    sha = statistics.median(times["sha"])
    label = f"{size >> 20} MiB SIF"
    return [{"name": f"{what} {label} (DSSE Ed25519)", "sbuild_s": round(statistics.median(times[what]), 3),
             "alternative": "sha256sum", "alternative_s": round(sha, 3),
             "ratio": round(statistics.median(times[what]) / sha, 3),
             "notes": f"peak RSS {rss[what]:.0f} MB; median of {reps}; target ratio <= 1.2, RSS < 100 MB"}
            for what in ("sign", "verify")]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="128 MiB instead of 1 GiB")
    args = p.parse_args(argv)
    for row in run(args.quick):
        print(f"{row['name']:<36} sbuild {row['sbuild_s']:>7.3f}s  {row['alternative']} "
              f"{row['alternative_s']:>7.3f}s  ratio {row['ratio']:.3f}  ({row['notes']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
