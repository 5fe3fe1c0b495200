"""``sbuild sign IMAGE``: add signatures to a SIF as ``apptainer sign`` does.

``--key PEM`` signs with a DSSE envelope (Ed25519, ECDSA or RSA private key); otherwise the
PGP secret keyring (``key_dir()/pgp-secret``) signs, ``-k/--keyidx N`` choosing the key
(asked on the terminal when there are several and no index). A protected key's passphrase
(or an encrypted PEM's) is read from ``$SBUILD_SIGN_PASSPHRASE`` when set, else asked on
the terminal without echo; it is never logged or shown. Default: one signature per group;
``-g N`` one group, ``-i ID`` one object (``-a`` is Apptainer's deprecated no-op).
"""

from __future__ import annotations

import argparse
import logging
import os

from builder.commands import add_output_flags
from builder.commands.flags import add_flag

__all__ = ["register", "passphrase", "PASSPHRASE_ENV"]

log = logging.getLogger("sbuild.sign")
PASSPHRASE_ENV = "SBUILD_SIGN_PASSPHRASE"


def register(subparsers, only: str | None = None) -> None:  # noqa: ANN001
    p = subparsers.add_parser("sign", help="add a digital signature to a SIF image",
                              description="Add digital signature(s) to a SIF image. The passphrase of a "
                                          f"protected key is read from ${PASSPHRASE_ENV}, else asked.")
    p.add_argument("image", metavar="IMAGE")
    add_flag(p, "-g", "--group-id", "--groupid", dest="group_id", type=int, help="sign objects with the group ID")
    add_flag(p, "-i", "--sif-id", "--id", dest="sif_id", type=int, help="sign the object with the ID")
    add_flag(p, "-a", "--all", action="store_true", help="sign all objects (deprecated: the default)")
    add_flag(p, "--key", env="SIGN_KEY", help="path to a PEM private key (DSSE signature)")
    add_flag(p, "-k", "--keyidx", type=int, help="the index of the PGP private key to use")
    add_output_flags(p)
    p.set_defaults(handler=_sign)


def passphrase(prompt: str = "Enter key passphrase : ") -> str:
    """The passphrase from ``$SBUILD_SIGN_PASSPHRASE``, else the terminal (no echo)."""
    if PASSPHRASE_ENV in os.environ:
        return os.environ[PASSPHRASE_ENV]
    import getpass

    from builder.signing import SigningError

    try:
        with open("/dev/tty", "r+b", buffering=0):
            pass
    except OSError:
        raise SigningError("the key is protected and there is no terminal to ask its passphrase on",
                           hint=f"set {PASSPHRASE_ENV}") from None
    return getpass.getpass(prompt)


def _dsse_signer(path: str):  # noqa: ANN202
    from builder.signing import DsseSigner, SigningError
    from builder.signing.dsse import load_private_key

    log.info("Signing image with key material from '%s'", path)
    try:
        try:
            key = load_private_key(path)
        except SigningError as e:
            if "passphrase is needed" not in str(e):
                raise
            key = load_private_key(path, passphrase("Enter password for private key: ").encode())
    except SigningError as e:
        raise SigningError(f"Failed to load key material: {e}") from None
    return DsseSigner([key]), None


def _pgp_signer(index: int | None):  # noqa: ANN202
    import sys

    from builder.signing import Keyring, PgpSigner
    from builder.signing.pgp import NeedPassphrase

    log.info("Signing image with PGP key material")
    ring = Keyring()
    if index is None and sys.stdin.isatty() and len(ring.list(secret=True)) > 1:
        for i, k in enumerate(ring.list(secret=True)):
            for uid in k["uids"]:
                print(f"{i}) U: {uid}")
            print(f"   F: {k['fpr']}\n   L: {k['bits']}\n   --------")
        index = int(input("Enter # of private key to use : "))
    gpg, key = ring.signing_key(index)
    try:
        gpg.clearsign(b"probe", key["fpr"])
        return PgpSigner(gpg, key["fpr"]), gpg
    except NeedPassphrase:
        pass
    except BaseException:
        gpg.close()
        raise
    secret = passphrase()
    try:
        gpg.clearsign(b"probe", key["fpr"], secret)
    except BaseException:
        gpg.close()
        raise
    return PgpSigner(gpg, key["fpr"], secret), gpg


def _sign(args: argparse.Namespace) -> int:
    from base.errors import ImageError
    from builder.signing import SigningError, sign_image
    from builder.signing.errors import IntegrityError

    for value, what in ((args.group_id, "group"), (args.sif_id, "object")):
        if value is not None and value <= 0:
            raise SigningError(f"Failed to sign container: integrity: invalid {what} ID")
    signer, gpg = _dsse_signer(args.key) if args.key else _pgp_signer(args.keyidx)
    try:
        sign_image(args.image, signer, [args.group_id] if args.group_id else [],
                   [args.sif_id] if args.sif_id else [])
    except (IntegrityError, SigningError, ImageError) as e:
        raise SigningError(f"Failed to sign container: integrity: {e}" if isinstance(e, IntegrityError)
                           else f"Failed to sign container: {e.message}") from None
    finally:
        if gpg is not None:
            gpg.close()
    log.info("Signature created and applied to image '%s'", args.image)
    return 0
