"""Fixtures of the signing tests: the SIF library's golden images and keys (``../shared``),
a private keyring directory per test, and the CLI run under Apptainer's name in-process."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from builder.cli import main

PGP_FPR = "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84"


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err

    def __repr__(self) -> str:
        return f"Run({self.status}, out={self.out!r}, err={self.err!r})"


@pytest.fixture(scope="session")
def sifdata(conformance: Path) -> Path:
    path = conformance / "sif" / "test"
    if not (path / "images").is_dir():
        pytest.skip(f"SIF signing goldens not found at {path}")
    return path


@pytest.fixture(scope="session")
def images(sifdata: Path) -> Path:
    return sifdata / "images"


@pytest.fixture(scope="session")
def keys(sifdata: Path) -> Path:
    return sifdata / "keys"


@pytest.fixture
def keysdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty local keyring directory ($APPTAINER_KEYSDIR) and no global keyring."""
    d = tmp_path / "keys"
    monkeypatch.setenv("APPTAINER_KEYSDIR", str(d))
    monkeypatch.setenv("APPTAINER_GLOBAL_KEYRING", str(tmp_path / "no-global-keyring"))
    monkeypatch.delenv("SBUILD_SIGN_PASSPHRASE", raising=False)
    for name in ("APPTAINER_VERIFY_KEY", "APPTAINER_SIGN_KEY", "APPTAINER_VERIFY_CERTIFICATE"):
        monkeypatch.delenv(name, raising=False)
    return d


@pytest.fixture
def pgpring(keysdir: Path, keys: Path) -> Path:
    """The keyring with the golden PGP key (``private.asc``, Unit Test) imported."""
    r = run_cli("key", "import", keys / "private.asc")
    assert r.status == 0, r
    return keysdir


def run_cli(*args, prog: str = "apptainer") -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in args], prog=prog)
    return Run(status, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def copy(tmp_path: Path):
    """A writable copy of a golden image."""

    def make(src: Path, name: str | None = None) -> Path:
        dst = tmp_path / (name or src.name)
        shutil.copyfile(src, dst)
        return dst

    return make
