"""Signatures in builds and pulls: ``Fingerprints:`` on a SIF base (localimage, library),
the warning-only verify of a base without it, ``library://`` pulls, ``inspect --signatures``
and the warning when a signed SIF becomes a .simg or a sandbox."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.signing.conftest import PGP_FPR, run_cli

OTHER = "0123456789ABCDEF0123456789ABCDEF01234567"


def _build(tmp: Path, name: str, recipe_text: str, *extra: str):
    recipe = tmp / f"{name}.def"
    recipe.write_text(recipe_text)
    return run_cli("build", *extra, tmp / name, recipe, prog="sbuild")


@pytest.fixture
def signed_base(tmp_path: Path, pgpring: Path) -> Path:
    r = _build(tmp_path, "base.sif", "Bootstrap: scratch\n\n%files\n    /etc/hostname /hostname\n")
    assert r.status == 0, r
    assert run_cli("sign", tmp_path / "base.sif").status == 0
    return tmp_path / "base.sif"


def _local(base: Path, fingerprints: str | None) -> str:
    text = f"Bootstrap: localimage\nFrom: {base}\n"
    if fingerprints is not None:
        text += f"Fingerprints: {fingerprints}\n"
    return text + "\n%labels\n    Stage two\n"


@pytest.mark.slow
def test_fingerprints_accept_a_base_signed_by_every_listed_key(tmp_path, signed_base):
    r = _build(tmp_path, "ok.sif", _local(signed_base, f"{PGP_FPR.lower()} # the unit test key"))
    assert r.status == 0, r
    assert (tmp_path / "ok.sif").exists()


@pytest.mark.slow
def test_fingerprints_name_the_group_and_the_missing_key(tmp_path, signed_base):
    r = _build(tmp_path, "no.sif", _local(signed_base, f"{PGP_FPR}, {OTHER}"))
    assert r.status == 1, r
    assert f"while checking fingerprint: image not signed by required entities: group 1 lacks {OTHER}" in r.err
    assert not (tmp_path / "no.sif").exists()


def test_fingerprints_check_every_group(tmp_path, images, pgpring):
    r = _build(tmp_path, "two.sif", _local(images / "two-groups-signed-pgp.sif", f"{PGP_FPR},{OTHER}"))
    assert r.status == 1
    assert f"group 1 lacks {OTHER}; group 2 lacks {OTHER}" in r.err


def test_fingerprints_refuse_dsse_and_unsigned_bases(tmp_path, images, pgpring):
    r = _build(tmp_path, "d.sif", _local(images / "one-group-signed-dsse.sif", PGP_FPR))
    assert r.status == 1 and "integrity: key material not provided for DSSE envelope signature" in r.err
    r = _build(tmp_path, "u.sif", _local(images / "one-group.sif", PGP_FPR))
    assert r.status == 1 and "integrity: signature not found for object group 1" in r.err


@pytest.mark.slow
def test_a_base_that_fails_verification_warns_without_fingerprints(tmp_path, signed_base):
    with open(signed_base, "r+b") as fh:  # the recipe object's name: covered, harmless to unpack
        fh.seek(4096 + 73)
        fh.write(b"X")
    r = _build(tmp_path, "w.sif", _local(signed_base, None))
    assert r.status == 0, r
    assert "data object descriptor integrity compromised: 1" in r.err
    assert "Bootstrap image could not be verified, but build will continue." in r.err


@pytest.mark.slow
def test_library_pull_verifies_and_warns(tmp_path, signed_base, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "library"))
    import libservers as servers

    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "cache"))
    store = servers.ObjectStore()
    lib = servers.Library(store)
    try:
        lib.add("test/s/signed", "1.0", servers.LibImage("img-signed", signed_base.read_bytes()))
        unsigned = tmp_path / "unsigned.sif"
        assert _build(tmp_path, "unsigned.sif", "Bootstrap: scratch\n").status == 0
        lib.add("test/s/unsigned", "1.0", servers.LibImage("img-unsigned", unsigned.read_bytes()))
        r = run_cli("pull", "--library", lib.url, tmp_path / "a.sif", "library://test/s/signed:1.0")
        assert r.status == 0, r
        assert "WARNING" not in r.err
        r = run_cli("pull", "--library", lib.url, tmp_path / "b.sif", "library://test/s/unsigned:1.0")
        assert r.status == 0, r
        assert "WARNING: integrity: signature not found for object group 1" in r.err
        assert "WARNING: Skipping container verification" in r.err
        assert (tmp_path / "b.sif").exists()
    finally:
        lib.stop()
        store.stop()


def test_inspect_shows_who_signed(cli, images, pgpring):
    r = run_cli("inspect", "--signatures", images / "two-groups-signed-pgp.sif", prog="sbuild")
    assert r.status == 0, r
    assert r.out == (f"signature 4 [PGP] on group 1: {PGP_FPR} (Unit Test <unit@test.com>)\n"
                     f"signature 5 [PGP] on group 2: {PGP_FPR} (Unit Test <unit@test.com>)\n")
    r = run_cli("inspect", "--signatures", "--json", images / "one-group-signed-dsse.sif", prog="sbuild")
    entry = json.loads(r.out)["signatures"][0]
    assert entry["format"] == "DSSE" and entry["keyids"][0] == "SHA256:x6l8ZblpSSXGaPMCzySedWg88BwIFcz8jlPb6el0mFs"


@pytest.mark.slow
def test_converting_a_signed_sif_says_the_signatures_are_lost(tmp_path, signed_base):
    r = run_cli("build", tmp_path / "c.simg", signed_base, prog="sbuild")
    assert r.status == 0, r
    assert "do not carry over to the simg image" in r.err
    r = run_cli("build", "--sandbox", tmp_path / "sb", signed_base, prog="sbuild")
    assert r.status == 0, r
    assert "do not carry over to the sandbox" in r.err
