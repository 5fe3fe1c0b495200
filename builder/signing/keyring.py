"""Apptainer's OpenPGP keyrings: where they are, and what ``sign``, ``verify`` and ``key`` do
with them (through ``pgp.Gpg``; the files stay in Apptainer's format).

Local keyrings: ``$APPTAINER_KEYSDIR`` (or ``$SINGULARITY_SYPGPDIR``, or ``key -d DIR``),
else ``$APPTAINER_CONFIGDIR/keys``, else ``~/.apptainer/keys``, holding ``pgp-public`` and
``pgp-secret``: concatenated binary OpenPGP packets (not keybox), directory 0700, files
0600. The global keyring is ``$APPTAINER_GLOBAL_KEYRING`` or
``/etc/apptainer/global-pgp-public``. The order of keys in ``pgp-secret`` is what
``--keyidx`` counts.

Limits: no key server (the ``key search/pull/push`` verbs say so); a file is rewritten
whole (to a temp name, then renamed) when a key is added or removed.
"""

from __future__ import annotations

import os

from builder.signing.errors import KeyringError
from builder.signing.pgp import Gpg

__all__ = ["keys_dir", "global_keyring", "VerifyKeys", "Keyring"]


def keys_dir(override: str | None = None, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if override:
        return override
    for name in ("APPTAINER_KEYSDIR", "SINGULARITY_SYPGPDIR"):
        if env.get(name):
            return env[name]
    if env.get("APPTAINER_CONFIGDIR"):
        return os.path.join(env["APPTAINER_CONFIGDIR"], "keys")
    return os.path.join(os.path.expanduser("~"), ".apptainer", "keys")


def global_keyring(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("APPTAINER_GLOBAL_KEYRING") or "/etc/apptainer/global-pgp-public"


def _nonempty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


class VerifyKeys:
    """The global keyring then the local public one, imported into one gpg home; which
    file each fingerprint came from (``source``: GLOBAL, LOCAL)."""

    def __init__(self, local_dir: str | None = None, global_path: str | None = None) -> None:
        self.gpg = Gpg()
        self._sources: dict[str, str] = {}
        try:
            for source, path in (("GLOBAL", global_path or global_keyring()),
                                 ("LOCAL", os.path.join(local_dir or keys_dir(), "pgp-public"))):
                if _nonempty(path):
                    for fpr in self.gpg.import_keys(path, agent=False):
                        self._sources.setdefault(fpr, source)
        except BaseException:
            self.gpg.close()
            raise

    def verify(self, blob: bytes):  # noqa: ANN201
        return self.gpg.verify(blob)

    def source(self, fingerprint: str) -> str:
        return self._sources.get(fingerprint.upper(), "REMOTE")

    def close(self) -> None:
        self.gpg.close()

    def __enter__(self) -> VerifyKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Keyring:
    """The local keyring in ``directory`` (``keys_dir()`` by default)."""

    def __init__(self, directory: str | None = None) -> None:
        self.dir = keys_dir(directory)
        self.public = os.path.join(self.dir, "pgp-public")
        self.secret = os.path.join(self.dir, "pgp-secret")

    def _gpg(self, secret: bool) -> tuple[Gpg, list[str]]:
        gpg = Gpg()
        path = self.secret if secret else self.public
        try:
            fprs = gpg.import_keys(path) if _nonempty(path) else []
        except BaseException:
            gpg.close()
            raise
        return gpg, fprs

    def list(self, secret: bool = False) -> list[dict]:
        """The keys in file order (dicts of ``pgp.parse_colons``)."""
        gpg, fprs = self._gpg(secret)
        with gpg:
            found = {k["fpr"]: k for k in gpg.keys(secret)}
        return [found[f] for f in fprs if f in found]

    def signing_key(self, index: int | None) -> tuple[Gpg, dict]:
        """A gpg home holding the secret keys, and the key at ``index`` (None: the only one)."""
        gpg, fprs = self._gpg(True)
        keys = {k["fpr"]: k for k in gpg.keys(True)}
        ordered = [keys[f] for f in fprs if f in keys]
        if not ordered:
            gpg.close()
            raise KeyringError("no secret key to sign with: the keyring is empty",
                               hint=f"create one with `key newpair` or `key import` ({self.secret})")
        if index is None and len(ordered) > 1:
            gpg.close()
            raise KeyringError(f"{len(ordered)} secret keys in {self.secret}: choose one with --keyidx",
                               hint="`key list --secret` shows them, counting from 0")
        i = index or 0
        if not 0 <= i < len(ordered):
            gpg.close()
            raise KeyringError("index out of range", hint=f"--keyidx takes 0 to {len(ordered) - 1}")
        return gpg, ordered[i]

    def _write(self, path: str, data: bytes) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def add(self, data: bytes, secret: bool, passphrase: str | None = None) -> list[str]:
        """Import key material (armored or binary) into the public or secret file: the new
        keys are appended in gpg's export form (a secret key's public half goes to the
        public file too, as Apptainer keeps it)."""
        gpg, have = self._gpg(secret)
        with gpg:
            new = [f for f in gpg.import_keys(data) if f not in have]
            if not new:
                return []
            added = gpg.export(new, secret=secret, passphrase=passphrase)
            public = gpg.export(new) if secret else b""
        path = self.secret if secret else self.public
        old = b""
        if _nonempty(path):
            with open(path, "rb") as fh:
                old = fh.read()
        self._write(path, old + added)
        if secret:
            self.add(public, False)
        return new

    def remove(self, fingerprint: str, secret: bool = False, passphrase: str | None = None) -> bool:
        gpg, have = self._gpg(secret)
        fpr = fingerprint.upper().removeprefix("0X")
        with gpg:
            keep = [f for f in have if f != fpr and not f.endswith(fpr)]
            if len(keep) == len(have):
                return False
            data = b"".join(gpg.export([f], secret=secret, passphrase=passphrase) for f in keep)
            self._write(self.secret if secret else self.public, data)
        return True

    def export(self, fingerprint: str, secret: bool = False, armor: bool = False,
               passphrase: str | None = None) -> bytes:
        gpg, have = self._gpg(secret)
        fpr = fingerprint.upper().removeprefix("0X")
        with gpg:
            match = [f for f in have if f == fpr or f.endswith(fpr)]
            if not match:
                raise KeyringError(f"no key {fingerprint} in {self.secret if secret else self.public}")
            return gpg.export(match[:1], secret=secret, armor=armor, passphrase=passphrase)
