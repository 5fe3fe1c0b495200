"""Signing and verifying stream the image: a SIF larger than the memory bound is signed and
verified by processes whose peak RSS stays under 100 MB (bench/sign_verify.py times the
1 GiB case against sha256sum)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.sign_verify import SBUILD, _key, make_image, timed

# runs ARGV and prints its peak RSS (KiB) from wait4
_PEAK = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
         "_, s, u = os.wait4(p.pid, 0); print(u.ru_maxrss); sys.exit(os.waitstatus_to_exitcode(s))")


def _peak_rss(argv: list[str]) -> float:
    """The peak RSS (MB) of ``argv`` alone. Started from a small Python process, not from this
    one: Linux carries the parent's RSS high-water mark into the child's ``ru_maxrss`` at exec,
    so a child of a test worker that grew past 100 MB (earlier tests in that worker) reported
    the worker's peak, not its own (the test failed under -n 2 with both figures equal)."""
    r = subprocess.run([sys.executable, "-c", _PEAK, *argv], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.split()[-1]) / 1024


@pytest.mark.slow
def test_sign_and_verify_stream_the_image(tmp_path: Path):
    image = tmp_path / "big.sif"
    make_image(image, 192 << 20)  # loaded whole, it alone would pass the 100 MB bound
    priv, pub = _key(tmp_path)
    sign_rss = _peak_rss([SBUILD, "sign", "--key", str(priv), str(image)])
    verify_rss = _peak_rss([SBUILD, "verify", "--key", str(pub), str(image)])
    assert sign_rss < 100 and verify_rss < 100, (sign_rss, verify_rss)
    with open(image, "r+b") as fh:  # and the stream really covered the end of the object
        fh.seek(image.stat().st_size - 2000)
        fh.write(b"\x00\x01")
    with pytest.raises(RuntimeError, match="data object integrity compromised: 1"):
        timed([SBUILD, "verify", "--key", str(pub), str(image)])
