"""``key`` (local keyrings in Apptainer's binary format), ``--keyidx``, x509 certificates
for ``verify --certificate``, and sign/verify as the unprivileged user."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.signing.conftest import PGP_FPR

ROOT = Path(__file__).resolve().parent.parent.parent


def _gpg_key(tmp: Path, uid: str) -> Path:
    """A fresh unprotected ed25519 OpenPGP key (armored secret key file), made by gpg."""
    home = Path(os.path.join("/tmp", f"sbk{os.getpid()}{abs(hash(uid)) % 10000}"))
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                        uid, "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
        out = tmp / "k.asc"
        out.write_bytes(subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                                        "--armor", "--export-secret-keys"], env=env, check=True,
                                       capture_output=True).stdout)
        return out
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def test_import_list_export_remove(cli, keys, keysdir, tmp_path):
    r = cli("key", "import", keys / "private.asc")
    assert r.status == 0 and f"Key with fingerprint {PGP_FPR} successfully added" in r.out
    for name in ("pgp-public", "pgp-secret"):
        data = (keysdir / name).read_bytes()
        assert data[0] & 0x80 and data[8:12] != b"KBXf"  # OpenPGP packets, not a keybox
        assert (keysdir / name).stat().st_mode & 0o777 == 0o600
    assert keysdir.stat().st_mode & 0o777 == 0o700
    assert cli("key", "import", keys / "private.asc").status == 255  # already there
    r = cli("key", "list")
    assert "0) U: Unit Test <unit@test.com>\n" in r.out and f"   F: {PGP_FPR}\n" in r.out
    assert "   L: 2048" in r.out
    assert "Private key listing" in cli("key", "list", "--secret").out
    r = cli("key", "export", "--armor", PGP_FPR, tmp_path / "pub.asc")
    assert r.status == 0 and (tmp_path / "pub.asc").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert cli("key", "export", PGP_FPR[-16:], tmp_path / "pub.gpg").status == 0
    assert cli("key", "remove", PGP_FPR).status == 0
    assert PGP_FPR not in cli("key", "list").out
    assert cli("key", "remove", PGP_FPR).status == 255
    assert cli("key", "import", tmp_path / "pub.gpg").status == 0
    assert PGP_FPR in cli("key", "list").out


@pytest.mark.parametrize("verb", ["search", "pull", "push"])
def test_key_server_verbs_say_none_is_configured(cli, keysdir, verb):
    r = cli("key", verb, "someone")
    assert r.status == 255 and "no key server is configured" in r.err


def test_keyidx_picks_the_signing_key(cli, keys, images, keysdir, tmp_path, copy):
    assert cli("key", "import", keys / "private.asc").status == 0
    assert cli("key", "import", _gpg_key(tmp_path, "Second <second@example.invalid>")).status == 0
    path = copy(images / "one-group.sif")
    r = cli("sign", path)
    assert r.status == 255 and "choose one with --keyidx" in r.err
    assert cli("sign", "-k", "1", path).status == 0
    r = cli("verify", path)
    assert r.status == 0, r
    assert "Signing entity: Second <second@example.invalid>" in r.out
    r = cli("sign", "-k", "5", path)
    assert r.status == 255 and "index out of range" in r.err


def _cert(key, issuer_key, subject: str, issuer: str, *, ca: bool, eku=None):  # noqa: ANN001
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def test_certificates(cli, images, keysdir, tmp_path, copy):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    pem = serialization.Encoding.PEM
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert(root_key, root_key, "root", "root", ca=True)
    mid = _cert(mid_key, root_key, "mid", "root", ca=True)
    leaf = _cert(leaf_key, mid_key, "leaf", "mid", ca=False, eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    server = _cert(leaf_key, mid_key, "leaf", "mid", ca=False, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    files = {}
    for name, c in (("root", root), ("mid", mid), ("leaf", leaf), ("server", server)):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_bytes(c.public_bytes(pem))
    (tmp_path / "leaf.key").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    path = copy(images / "two-groups.sif")
    assert cli("sign", "--key", tmp_path / "leaf.key", path).status == 0
    r = cli("verify", "--certificate", files["leaf"], "--certificate-intermediates", files["mid"],
            "--certificate-roots", files["root"], path)
    assert r.status == 0, r
    assert f"Verifying image with key material from certificate '{files['leaf']}'" in r.err
    r = cli("verify", "--certificate", files["server"], "--certificate-intermediates", files["mid"],
            "--certificate-roots", files["root"], path)
    assert r.status == 255 and "incompatible key usage" in r.err
    r = cli("verify", "--certificate", files["leaf"], "--certificate-roots", files["root"], path)
    assert r.status == 255 and "certificate signed by unknown authority" in r.err


@pytest.mark.slow
def test_sign_and_verify_as_the_unprivileged_user(unprivileged_user, images, keys, tmp_path):
    import tempfile

    user = unprivileged_user
    work = Path(tempfile.mkdtemp(prefix="sbsign-user", dir="/tmp"))  # pytest's tmp is root's only
    try:
        _as_user(user, work, images, keys)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _as_user(user, work: Path, images: Path, keys: Path) -> None:  # noqa: ANN001
    for name in ("one-group.sif", "two-groups.sif"):
        shutil.copyfile(images / name, work / name)
    shutil.copyfile(keys / "private.asc", work / "private.asc")
    user.chown(work)
    app = str(ROOT / ".venv" / "bin" / "apptainer")
    env = {"APPTAINER_KEYSDIR": str(work / "keys")}
    r = user.run(app, "key", "import", work / "private.asc", env=env)
    assert r.returncode == 0, r.stderr
    r = user.run(app, "sign", work / "one-group.sif", env=env)
    assert r.returncode == 0, r.stderr
    r = user.run(app, "verify", work / "one-group.sif", env=env)
    assert r.returncode == 0, r.stderr
    assert f"[LOCAL]            Fingerprint: {PGP_FPR}" in r.stdout
    r = user.run(app, "sign", "--key", keys / "ed25519-private.pem", work / "two-groups.sif", env=env)
    assert r.returncode == 0, r.stderr
    r = user.run(app, "verify", "--key", keys / "ed25519-public.pem", work / "two-groups.sif", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Objects verified:") == 2
