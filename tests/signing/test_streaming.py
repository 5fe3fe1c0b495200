"""Signing and verifying stream the image: a SIF larger than the memory bound is signed and
verified by processes whose peak RSS stays under 100 MB (bench/sign_verify.py times the
1 GiB case against sha256sum)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.sign_verify import SBUILD, _key, make_image, timed


@pytest.mark.slow
def test_sign_and_verify_stream_the_image(tmp_path: Path):
    image = tmp_path / "big.sif"
    make_image(image, 192 << 20)  # loaded whole, it alone would pass the 100 MB bound
    priv, pub = _key(tmp_path)
    _, sign_rss = timed([SBUILD, "sign", "--key", str(priv), str(image)])
    _, verify_rss = timed([SBUILD, "verify", "--key", str(pub), str(image)])
    assert sign_rss < 100 and verify_rss < 100, (sign_rss, verify_rss)
    with open(image, "r+b") as fh:  # and the stream really covered the end of the object
        fh.seek(image.stat().st_size - 2000)
        fh.write(b"\x00\x01")
    with pytest.raises(RuntimeError, match="data object integrity compromised: 1"):
        timed([SBUILD, "verify", "--key", str(pub), str(image)])
