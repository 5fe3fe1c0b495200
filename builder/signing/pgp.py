"""OpenPGP through the real ``gpg`` binary: clear-signing SIF metadata, verifying clear-signed
messages, and the key operations of ``sbuild key``. No OpenPGP crypto is done in Python.

Each ``Gpg`` is a throwaway GNUPGHOME (mode 0700, a short path under the temp directory for
the agent's socket) into which the keyring files are imported; it is removed, and its agent
stopped, on ``close``. Passphrases go to gpg on its standard input (``--passphrase-fd 0``,
loopback pinentry), never on a command line, in the environment or in a message.

Signatures are made by the primary key (``-u FPR!``) with SHA-256, as Apptainer's are; the
verdict of a verification is read from gpg's status lines (VALIDSIG's last field is the
primary key's fingerprint, which the signature descriptor must hold). Error texts follow the
Go library's (``openpgp: signature made by unknown entity`` …) so that messages match.

Limits: gpg's packet layout differs from go-crypto's (subpacket order, issuer in the
unhashed area), so PGP signatures verify everywhere but are not byte-identical to Go's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from base.errors import CapabilityError
from builder.signing.errors import IntegrityError, SigningError

__all__ = ["Gpg", "PgpVerdict", "is_clearsign", "NeedPassphrase"]

_SIG_HEAD = b"-----BEGIN PGP SIGNED MESSAGE-----"
_WEAK_HASHES = {"1", "2", "3"}  # MD5, SHA1, RIPEMD160: refused as go-crypto does


def is_clearsign(blob: bytes) -> bool:
    return blob.lstrip().startswith(_SIG_HEAD) and b"-----BEGIN PGP SIGNATURE-----" in blob


class NeedPassphrase(SigningError):
    """The secret key is protected and no (or a wrong) passphrase was given."""


class PgpVerdict:
    """A good signature: the signed text, the primary key's fingerprint (upper hex), the
    signer's user ID and the hash algorithm's gpg number."""

    __slots__ = ("plaintext", "fingerprint", "uid", "hash_algo")

    def __init__(self, plaintext: bytes, fingerprint: str, uid: str, hash_algo: str) -> None:
        self.plaintext, self.fingerprint, self.uid, self.hash_algo = plaintext, fingerprint, uid, hash_algo


class Gpg:
    """A temporary gpg home. Use as a context manager."""

    def __init__(self) -> None:
        self.binary = shutil.which("gpg")
        if self.binary is None:
            raise CapabilityError("gpg not found: PGP signing and verification use GnuPG",
                                  hint="install the gnupg package")
        self.home = tempfile.mkdtemp(prefix="sbgpg")
        os.chmod(self.home, 0o700)
        self._agent = False

    def __enter__(self) -> Gpg:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._agent and shutil.which("gpgconf"):
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self._env(), capture_output=True, check=False)
        shutil.rmtree(self.home, ignore_errors=True)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GPG_", "GNUPG"))}
        env["GNUPGHOME"] = self.home
        env["LC_ALL"] = "C"
        return env

    def run(self, args: list[str], *, passphrase: str | None = None, agent: bool = False,
            data: bytes | None = None) -> tuple[int, list[list[str]], bytes, str]:
        """(status, status lines split in words, stdout, stderr) of one gpg call."""
        status = os.path.join(self.home, "status")
        cmd = [self.binary, "--batch", "--no-tty", "--yes", "--no-auto-key-retrieve", "--status-file", status]
        stdin = data
        if passphrase is not None:
            cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
            stdin = passphrase.encode() + b"\n"
        elif agent:
            cmd += ["--pinentry-mode", "loopback", "--passphrase-fd", "0"]
            stdin = b""
        self._agent = self._agent or agent or passphrase is not None
        proc = subprocess.run(cmd + args, input=stdin or b"", capture_output=True, env=self._env(), check=False)
        lines: list[list[str]] = []
        if os.path.exists(status):
            with open(status, encoding="utf-8", errors="replace") as fh:
                lines = [ln.split()[1:] for ln in fh if ln.startswith("[GNUPG:] ")]
            os.unlink(status)
        return proc.returncode, lines, proc.stdout, proc.stderr.decode("utf-8", "replace")

    def import_keys(self, path_or_data: str | bytes, *, agent: bool = True) -> list[str]:
        """Import a key file (or bytes); the fingerprints imported, in file order
        (``agent=False``: public keys only, no gpg-agent started)."""
        if isinstance(path_or_data, bytes):
            path = os.path.join(self.home, "in.key")
            with open(path, "wb") as fh:
                fh.write(path_or_data)
        else:
            path = path_or_data
        _, lines, _, err = self.run(["--import", path], agent=agent)
        fprs = list(dict.fromkeys(w[2].upper() for w in lines if w[0] == "IMPORT_OK" and len(w) > 2))
        if not fprs and not any(w[0] == "IMPORT_RES" for w in lines):
            raise SigningError(f"gpg could not read the keys: {_last(err)}")
        return fprs

    def keys(self, secret: bool = False) -> list[dict]:
        """The keys in this home: fpr, keyid, uids, algo, bits, created, expires."""
        _, _, out, _ = self.run(["--with-colons", "--fixed-list-mode",
                                 "--list-secret-keys" if secret else "--list-keys"])
        return parse_colons(out.decode("utf-8", "replace"))

    def clearsign(self, payload: bytes, fingerprint: str, passphrase: str | None = None) -> bytes:
        """A clear-signature of ``payload`` by the primary key ``fingerprint`` (SHA-256)."""
        src = os.path.join(self.home, "payload")
        dst = src + ".asc"
        with open(src, "wb") as fh:
            fh.write(payload)
        rc, lines, _, err = self.run(["--digest-algo", "SHA256", "--local-user", fingerprint + "!",
                                      "--output", dst, "--clearsign", src], passphrase=passphrase, agent=True)
        words = {w[0] for w in lines}
        if rc != 0 or not os.path.exists(dst):
            if words & {"BAD_PASSPHRASE", "MISSING_PASSPHRASE"} or "passphrase" in err.lower():
                raise NeedPassphrase("the secret key is protected: " + (
                    "the passphrase is wrong" if passphrase else "a passphrase is needed"))
            raise SigningError(f"gpg could not sign: {_last(err)}")
        with open(dst, "rb") as fh:
            blob = fh.read()
        return blob.rstrip(b"\n")

    def verify(self, blob: bytes) -> PgpVerdict:
        """Check a clear-signed message; IntegrityError worded as go-crypto's on failure."""
        src = os.path.join(self.home, "sig.asc")
        out = os.path.join(self.home, "plain")
        with open(src, "wb") as fh:
            fh.write(blob)
        rc, lines, _, err = self.run(["--output", out, "--decrypt", src])
        byword = {w[0]: w[1:] for w in lines}
        if "VALIDSIG" in byword and "GOODSIG" in byword or "EXPSIG" in byword:
            valid = byword["VALIDSIG"]
            if valid[7] in _WEAK_HASHES:
                raise IntegrityError("openpgp: invalid signature: hash algorithm is not allowed")
            uid = " ".join(byword.get("GOODSIG", byword.get("EXPSIG", ["", ""]))[1:])
            with open(out, "rb") as fh:
                text = fh.read()
            return PgpVerdict(text, valid[-1].upper(), uid, valid[7])
        if "NO_PUBKEY" in byword or ("ERRSIG" in byword and byword["ERRSIG"][5:6] == ["9"]):
            raise IntegrityError("openpgp: signature made by unknown entity")
        if "BADSIG" in byword:
            raise IntegrityError("openpgp: invalid signature: hash tag doesn't match")
        raise IntegrityError(f"openpgp: invalid signature: {_last(err) or 'gpg status ' + str(rc)}")

    def export(self, fingerprints: list[str], secret: bool = False, passphrase: str | None = None,
               armor: bool = False) -> bytes:
        args = (["--armor"] if armor else []) + ["--export-secret-keys" if secret else "--export", *fingerprints]
        rc, _, out, err = self.run(args, passphrase=passphrase, agent=secret)
        if rc != 0:
            raise SigningError(f"gpg could not export the keys: {_last(err)}")
        return out


def parse_colons(text: str) -> list[dict]:
    """gpg's ``--with-colons`` key listing as dicts (primary keys only, with their uids)."""
    keys: list[dict] = []
    for line in text.splitlines():
        f = line.split(":")
        if f[0] in ("pub", "sec"):
            keys.append({"keyid": f[4], "algo": f[3], "bits": int(f[2] or 0), "created": f[5],
                         "expires": f[6], "fpr": "", "uids": [], "secret": f[0] == "sec"})
        elif f[0] == "fpr" and keys and not keys[-1]["fpr"]:
            keys[-1]["fpr"] = f[9].upper()
        elif f[0] == "uid" and keys:
            keys[-1]["uids"].append(_unescape(f[9]))
    return keys


def _unescape(text: str) -> str:
    return text.replace("\\x3a", ":").replace("\\x5c", "\\")


def _last(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("gpg: ") if lines else ""
