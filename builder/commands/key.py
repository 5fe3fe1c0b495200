"""``sbuild key``: manage the local OpenPGP keyrings as ``apptainer key`` does.

Verbs: ``newpair`` (an RSA key made by gpg; name, email, comment, passphrase from the flags,
``$SBUILD_SIGN_PASSPHRASE`` or the terminal), ``list [-s]``, ``import FILE`` (a file with a
secret key goes to ``pgp-secret`` and its public half to ``pgp-public``), ``export [-s]
[-a] FINGERPRINT FILE`` and ``remove FINGERPRINT``. ``search``, ``pull`` and ``push`` need a
key server, and none is configured in sbuild: they say so and fail. ``-d/--keysdir DIR``
(or ``$APPTAINER_KEYSDIR``) picks the keyring directory.
"""

from __future__ import annotations

import argparse
import datetime
import logging

from base.errors import UsageError
from builder.commands import add_output_flags

__all__ = ["register"]

log = logging.getLogger("sbuild.key")
_NO_SERVER = "no key server is configured in sbuild: keys are only kept in the local keyring"


def register(subparsers, only: str | None = None) -> None:  # noqa: ANN001
    for word in ("key", "keys"):  # `keys` is Apptainer's alias, left out of the command list
        if only not in (None, word):
            continue
        extra = {"help": "manage OpenPGP keys"} if word == "key" else {}
        p = subparsers.add_parser(word, description="Manage the local OpenPGP keyrings used to sign and verify.",
                                  **extra)
        p.add_argument("-d", "--keysdir", default=None, help="the keyring directory ($APPTAINER_KEYSDIR)")
        sub = p.add_subparsers(dest="verb", metavar="VERB")
        _verbs(sub)
        add_output_flags(p)
        p.set_defaults(handler=_no_verb)


def _verbs(sub) -> None:  # noqa: ANN001
    p = sub.add_parser("newpair", help="create a new key pair")
    p.add_argument("-N", "--name", default="")
    p.add_argument("-E", "--email", default="")
    p.add_argument("-C", "--comment", default="")
    p.add_argument("-P", "--password", default=None, help="passphrase (prefer $SBUILD_SIGN_PASSPHRASE)")
    p.add_argument("-b", "--bit-length", type=int, default=4096)
    p.add_argument("-U", "--push", default="false", nargs="?", const="true", help="push (no key server)")
    p.set_defaults(handler=_newpair)
    p = sub.add_parser("list", help="list the keys")
    p.add_argument("-s", "--secret", action="store_true", help="list the secret keys")
    p.set_defaults(handler=_list)
    p = sub.add_parser("import", help="import keys from a file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--new-password", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=_import)
    p = sub.add_parser("export", help="export a key to a file")
    p.add_argument("fingerprint", metavar="FINGERPRINT")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-s", "--secret", action="store_true")
    p.add_argument("-a", "--armor", action="store_true")
    p.set_defaults(handler=_export)
    p = sub.add_parser("remove", help="remove a key from the public keyring")
    p.add_argument("fingerprint", metavar="FINGERPRINT")
    p.add_argument("-s", "--secret", action="store_true", help="remove from the secret keyring")
    p.set_defaults(handler=_remove)
    for verb in ("search", "pull", "push"):
        p = sub.add_parser(verb, help=f"(needs a key server: {_NO_SERVER})")
        p.add_argument("words", nargs="*")
        p.add_argument("-u", "--url", default=None)
        p.set_defaults(handler=_no_server)


def _ring(args: argparse.Namespace):  # noqa: ANN202
    from builder.signing import Keyring

    return Keyring(args.keysdir)


def _no_verb(args: argparse.Namespace) -> int:
    raise UsageError("key: a verb is needed: newpair, list, import, export, remove")


def _no_server(args: argparse.Namespace) -> int:
    from builder.signing import KeyringError

    raise KeyringError(f"key {args.verb}: {_NO_SERVER}", hint="use key import/export to move keys")


def _list(args: argparse.Namespace) -> int:
    ring = _ring(args)
    kind = "Private" if args.secret else "Public"
    print(f"{kind} key listing ({ring.secret if args.secret else ring.public}):\n")
    for i, k in enumerate(ring.list(secret=args.secret)):
        for uid in k["uids"] or [""]:
            print(f"{i}) U: {uid}")
        created = datetime.datetime.fromtimestamp(int(k["created"] or 0), datetime.timezone.utc)
        print(f"   C: {created:%Y-%m-%d %H:%M:%S %z}")
        print(f"   F: {k['fpr']}")
        print(f"   L: {k['bits']}")
        print("   --------")
    return 0


def _import(args: argparse.Namespace) -> int:
    from builder.signing import KeyringError
    from builder.signing.pgp import Gpg

    try:
        with open(args.file, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise KeyringError(f"unable to import key: {args.file}: {e.strerror}") from None
    with Gpg() as gpg:
        gpg.import_keys(data)
        secret = bool(gpg.keys(secret=True))
    ring = _ring(args)
    new = ring.add(data, secret=secret)
    if not new:
        raise KeyringError(f"unable to import key: the key(s) in {args.file} are already in the keyring")
    for fpr in new:
        print(f"Key with fingerprint {fpr} successfully added to the {'private' if secret else 'public'} keyring")
    return 0


def _export(args: argparse.Namespace) -> int:
    from builder.commands.sign import PASSPHRASE_ENV
    import os

    data = _ring(args).export(args.fingerprint, secret=args.secret, armor=args.armor,
                              passphrase=os.environ.get(PASSPHRASE_ENV) if args.secret else None)
    fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if args.secret else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    print(f"{'Private' if args.secret else 'Public'} key with fingerprint {args.fingerprint.upper()} "
          f"correctly exported to file: {args.file}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from builder.signing import KeyringError

    if not _ring(args).remove(args.fingerprint, secret=args.secret):
        raise KeyringError(f"unable to remove key: no key {args.fingerprint} in the keyring")
    log.info("Key with fingerprint %s removed", args.fingerprint.upper())
    return 0


def _newpair(args: argparse.Namespace) -> int:
    from builder.commands.sign import passphrase
    from builder.signing import KeyringError
    from builder.signing.pgp import Gpg

    if args.push not in ("false", "0", "no"):
        raise KeyringError(f"key newpair --push: {_NO_SERVER}")
    name = args.name or input("Enter your name (e.g., John Doe) : ")
    email = args.email or input("Enter your email address (e.g., john.doe@example.com) : ")
    uid = name + (f" ({args.comment})" if args.comment else "") + f" <{email}>"
    secret = args.password if args.password is not None else passphrase("Enter a passphrase for this key : ")
    log.info("Generating Entity and OpenPGP Key Pair...")
    with Gpg() as gpg:
        rc, lines, _, err = gpg.run(["--quick-gen-key", uid, f"rsa{args.bit_length}", "sign", "never"],
                                    passphrase=secret)
        created = [w for w in lines if w[0] == "KEY_CREATED"]
        if rc != 0 or not created:
            raise KeyringError(f"gpg could not create the key: {err.strip().splitlines()[-1:] or rc}")
        fpr = created[0][2]
        data = gpg.export([fpr], secret=True, passphrase=secret)
    _ring(args).add(data, secret=True, passphrase=secret or None)
    print(f"Key created: fingerprint {fpr}")
    return 0
