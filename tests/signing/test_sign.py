"""Signing: re-signing the unsigned goldens reproduces the DSSE goldens byte for byte; images
sbuild builds and signs (DSSE and PGP) verify, and `siftool list` shows their signatures;
selection (-g, -i) and what it means for verification; secrets never leak."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.signing.conftest import PGP_FPR, run_cli

FAIL = "FATAL:   Failed to verify container: integrity: "


@pytest.mark.parametrize("name", ["one-group", "two-groups"])
def test_resigning_the_unsigned_goldens_gives_the_dsse_goldens(images, keys, copy, name):
    from builder.signing import DsseSigner, sign_image
    from builder.signing.dsse import load_private_key

    path = copy(images / f"{name}.sif")
    signer = DsseSigner([load_private_key(str(keys / "ed25519-private.pem")),
                         load_private_key(str(keys / "rsa-private.pem"))], trailing_newline=True)
    sign_image(str(path), signer)
    assert path.read_bytes() == (images / f"{name}-signed-dsse.sif").read_bytes()


@pytest.mark.parametrize("name", ["one-group", "two-groups"])
def test_pgp_resigning_signs_the_golden_metadata(cli, images, pgpring, copy, name):
    """gpg's packets differ from go-crypto's (not byte-identical), but the signed text, the
    descriptors and the verdict are the golden's."""
    from builder.signing import SignImage

    path = copy(images / f"{name}.sif")
    r = cli("sign", path)
    assert r.status == 0, r
    assert "INFO:    Signing image with PGP key material" in r.err
    assert f"INFO:    Signature created and applied to image '{path}'" in r.err
    with SignImage(str(path)) as ours, SignImage(str(images / f"{name}-signed-pgp.sif")) as gold:
        for a, b in zip(ours.signatures(), gold.signatures(), strict=True):
            assert _text(ours.read(a)) == _text(gold.read(b))
            assert ours.raw_descriptor(a)[:17] == gold.raw_descriptor(b)[:17]  # type, id, group, link
            assert ours.raw_descriptor(a)[201:] == gold.raw_descriptor(b)[201:]  # hash type, fingerprint
    assert cli("verify", path).status == 0


def _text(blob: bytes) -> bytes:
    return blob.split(b"\n\n", 1)[1].split(b"\n-----BEGIN PGP SIGNATURE-----")[0]


@pytest.fixture
def built(tmp_path: Path) -> Path:
    recipe = tmp_path / "s.def"
    recipe.write_text("Bootstrap: scratch\n\n%files\n    /etc/hostname /hostname\n\n%labels\n    Owner test\n")
    out = tmp_path / "built.sif"
    r = run_cli("build", out, recipe, prog="sbuild")
    assert r.status == 0, r
    return out


@pytest.mark.slow
def test_an_image_built_and_signed_by_sbuild_verifies_dsse(cli, built, keys, keysdir):
    r = cli("sign", "--key", keys / "ecdsa-private.pem", built)
    assert r.status == 0, r
    r = cli("verify", "--key", keys / "ecdsa-public.pem", built)
    assert r.status == 0, r
    assert "1   |1       |NONE    |Def.FILE" in r.out and "|FS" in r.out
    listing = subprocess.run(["siftool", "list", built], capture_output=True, text=True, check=True).stdout
    assert re.search(r"^4 +\|NONE +\|1 +\(G\) +\|[0-9-]+ +\|Signature \(SHA-256\)$", listing, re.M), listing
    r = cli("verify", "--key", keys / "rsa-public.pem", built)
    assert r.status == 255 and "Found: 0, Expected 1" in r.err


@pytest.mark.slow
def test_an_image_built_and_signed_by_sbuild_verifies_pgp(cli, built, pgpring):
    r = cli("sign", built)
    assert r.status == 0, r
    r = cli("verify", built)
    assert r.status == 0, r
    assert f"[LOCAL]            Fingerprint: {PGP_FPR}" in r.out
    listing = subprocess.run(["siftool", "info", "4", built], capture_output=True, text=True, check=True).stdout
    assert PGP_FPR in listing.upper().replace(" ", "")


def test_sign_one_group_and_one_object(cli, images, keys, keysdir, copy):
    key, pub = keys / "ed25519-private.pem", keys / "ed25519-public.pem"
    path = copy(images / "two-groups.sif")
    assert cli("sign", "--key", key, "-g", "2", path).status == 0
    r = cli("verify", "--key", pub, path)
    assert r.status == 255 and f"{FAIL}signature not found for object group 1" in r.err
    assert cli("verify", "--key", pub, "-g", "2", path).status == 0
    path = copy(images / "one-group.sif", "obj.sif")
    assert cli("sign", "--key", key, "-i", "2", path).status == 0
    r = cli("verify", "--key", pub, path)
    assert r.status == 255 and f"{FAIL}object 1: object not signed" in r.err
    r = cli("verify", "--key", pub, "-i", "2", path)
    assert r.status == 0, r


def test_an_extra_signature_by_an_unknown_key_fails_the_group(cli, images, keys, keysdir, copy):
    path = copy(images / "one-group-signed-dsse.sif")
    assert cli("sign", "--key", keys / "ecdsa-private.pem", path).status == 0
    r = cli("verify", "--key", keys / "ed25519-public.pem", path)
    assert r.status == 255 and "signature object 4 not valid" in r.err


def test_sign_an_image_without_groups(cli, images, keys, keysdir, copy):
    r = cli("sign", "--key", keys / "ed25519-private.pem", copy(images / "empty.sif"))
    assert r.status == 255 and "FATAL:   Failed to sign container: integrity: no groups found" in r.err


@pytest.mark.slow
def test_secrets_never_leak(cli, images, keys, keysdir, copy, tmp_path, monkeypatch):
    """A protected PEM and a protected PGP key: their passphrase and key bytes appear in no
    output, error or image."""
    from cryptography.hazmat.primitives import serialization

    from builder.signing.dsse import load_private_key

    secret = "s3cret-Passphrase-42"
    pem = tmp_path / "enc.pem"
    raw = load_private_key(str(keys / "rsa-private.pem"))
    pem.write_bytes(raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(secret.encode())))
    path = copy(images / "one-group.sif")
    r = cli("sign", "--key", pem, path)  # no passphrase: refused without showing anything
    assert r.status == 255 and secret not in r.err + r.out
    monkeypatch.setenv("SBUILD_SIGN_PASSPHRASE", "wrong")
    r = cli("--debug", "sign", "--key", pem, path)
    assert r.status == 255 and "wrong" not in r.err.replace("wrong passphrase", "")
    monkeypatch.setenv("SBUILD_SIGN_PASSPHRASE", secret)
    r = cli("--debug", "sign", "--key", pem, path)
    assert r.status == 0, r
    r2 = cli("key", "newpair", "-N", "Leak Test", "-E", "leak@example.invalid", "-b", "2048")
    assert r2.status == 0, r2
    r3 = cli("--debug", "sign", "-k", "0", path)
    assert r3.status == 0, r3
    monkeypatch.setenv("SBUILD_SIGN_PASSPHRASE", "not-it")
    r4 = cli("sign", "-k", "0", path)
    assert r4.status == 255 and "not-it" not in r4.err
    blob = path.read_bytes()
    der = raw.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    for r in (r, r2, r3, r4):
        assert secret not in r.out + r.err
    assert secret.encode() not in blob and der[-64:] not in blob
    assert b"PRIVATE KEY" not in blob
    assert (keysdir / "pgp-secret").stat().st_mode & 0o077 == 0
    assert cli("verify", path).status == 255  # two signature formats: never both pass (reference §4.2)
    monkeypatch.setenv("SBUILD_SIGN_PASSPHRASE", secret)
    signed = tmp_path / "signed.sif"  # a build from the signed image, the passphrase still set
    r5 = run_cli("build", "-F", signed, *_scratch_recipe(tmp_path, secret), prog="sbuild")
    assert r5.status == 0, r5
    assert cli("sign", "--key", pem, signed).status == 0
    recipe = tmp_path / "next.def"
    recipe.write_text(f"Bootstrap: localimage\nFrom: {signed}\n\n%labels\n    Next yes\n")
    r6 = run_cli("build", tmp_path / "next.sif", recipe, prog="sbuild")
    assert r6.status == 0, r6
    for r in (r5, r6):
        assert secret not in r.out + r.err
    assert secret.encode() not in (tmp_path / "next.sif").read_bytes()
    assert secret.encode() not in signed.read_bytes()


def _scratch_recipe(tmp_path: Path, secret: str) -> list[Path]:
    """A scratch recipe (its copy goes into the image) built while the passphrase is set."""
    recipe = tmp_path / "scratch.def"
    recipe.write_text("Bootstrap: scratch\n\n%files\n    /etc/hostname /hostname\n")
    return [recipe]
