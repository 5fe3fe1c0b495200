"""Images sbuild signs verify with the Go SIF library itself (Debian's sif 2.8.3, PGP only:
``gosif/main.go`` built against golang-github-sylabs-sif-dev), and a tampered one fails there
with the same error sbuild gives."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.signing.conftest import run_cli

HERE = Path(__file__).resolve().parent
GOCODE = Path("/usr/share/gocode/src")


@pytest.fixture(scope="session")
def gosif(tmp_path_factory) -> Path:
    if shutil.which("go") is None or not (GOCODE / "github.com/sylabs/sif/pkg/integrity").is_dir():
        pytest.skip("needs go and Debian's Go SIF library (apt-get install golang-go golang-github-sylabs-sif-dev)")
    tmp = tmp_path_factory.mktemp("gosif")
    gopath = tmp / "gopath" / "src" / "github.com" / "sylabs" / "sif"
    gopath.mkdir(parents=True)
    (gopath / "v2").symlink_to(GOCODE / "github.com/sylabs/sif")  # the module's /v2 import path
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": f"{tmp / 'gopath'}:{GOCODE.parent}",
           "GOCACHE": str(tmp / "cache"), "GOFLAGS": ""}
    out = tmp / "sifverify"
    r = subprocess.run(["go", "build", "-o", str(out), str(HERE / "gosif" / "main.go")], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building the Go verifier failed: {r.stderr[-800:]}")
    return out


def _go(gosif: Path, keys: Path, image: Path) -> tuple[int, str]:
    r = subprocess.run([str(gosif), str(keys / "private.asc"), str(image)], capture_output=True, text=True)
    return r.returncode, r.stdout.strip()


@pytest.mark.slow
def test_the_go_library_verifies_what_sbuild_signed(gosif, keys, images, pgpring, tmp_path):
    recipe = tmp_path / "s.def"
    recipe.write_text("Bootstrap: scratch\n\n%files\n    /etc/hostname /hostname\n")
    built = tmp_path / "built.sif"
    assert run_cli("build", built, recipe, prog="sbuild").status == 0
    assert _go(gosif, keys, built) == (1, "integrity: signature not found for object group 1")
    assert run_cli("sign", built).status == 0
    assert _go(gosif, keys, built) == (0, "OK")
    two = tmp_path / "two.sif"
    shutil.copyfile(images / "two-groups.sif", two)
    assert run_cli("sign", two).status == 0
    assert _go(gosif, keys, two) == (0, "OK")


@pytest.mark.slow
@pytest.mark.parametrize("offset", [0, 4096 + 73, 36864 + 100, 32768])
def test_go_and_sbuild_agree_on_tampered_images(gosif, keys, images, pgpring, tmp_path, offset):
    path = tmp_path / "t.sif"
    shutil.copyfile(images / "one-group.sif", path)
    assert run_cli("sign", path).status == 0
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ 0x23]))
    status, text = _go(gosif, keys, path)
    assert status == 1
    r = run_cli("verify", path)
    assert r.status == 255
    assert f"FATAL:   Failed to verify container: {text}" in r.err
