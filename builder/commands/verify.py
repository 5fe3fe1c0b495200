"""``sbuild verify IMAGE``: check a SIF's signatures as ``apptainer verify`` does.

Key material, exactly one source, in Apptainer's order: ``--certificate`` (x509, the chain
checked against ``--certificate-roots``/``--certificate-intermediates`` or the system roots,
code-signing EKU required; its key verifies DSSE), ``--key PEM`` (DSSE), else the PGP
keyrings (global, then local; no key server is configured, so ``--local`` changes nothing).
Output: per signature the signer (PGP) and the table of objects verified on stdout;
``INFO:``/``FATAL:`` lines on stderr; ``--json`` prints Apptainer's JSON. A failure is
``Failed to verify container: integrity: …`` (255 under Apptainer's names).

``report_verify(path, …)`` is the same check for pulls and builds (``library://``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from base.errors import UsageError
from builder.commands import add_output_flags
from builder.commands.flags import add_flag

__all__ = ["register", "run_verify", "print_result", "json_entries"]

log = logging.getLogger("sbuild.verify")


def register(subparsers, only: str | None = None) -> None:  # noqa: ANN001
    p = subparsers.add_parser("verify", help="verify the signatures of a SIF image",
                              description="Verify the digital signature(s) of a SIF image.")
    p.add_argument("image", metavar="IMAGE")
    add_flag(p, "-g", "--group-id", "--groupid", dest="group_id", type=int, help="verify objects with the group ID")
    add_flag(p, "-i", "--sif-id", "--id", dest="sif_id", type=int, help="verify the object with the ID")
    add_flag(p, "-a", "--all", action="store_true", help="verify all objects (legacy signatures)")
    add_flag(p, "--legacy-insecure", action="store_true", help="verify (insecure) legacy signatures")
    add_flag(p, "--key", env="VERIFY_KEY", help="path to a PEM public key (DSSE signatures)")
    add_flag(p, "--certificate", env="VERIFY_CERTIFICATE", help="path to an x509 certificate (PEM)")
    add_flag(p, "--certificate-intermediates", env="VERIFY_INTERMEDIATES", help="intermediate certificates (PEM)")
    add_flag(p, "--certificate-roots", env="VERIFY_ROOTS", help="root certificates (PEM; default: system roots)")
    add_flag(p, "--ocsp-verify", env="VERIFY_OCSP", action="store_true", help="online revocation check (unsupported)")
    add_flag(p, "-l", "--local", action="store_true", help="only verify with local keys (always so here)")
    add_flag(p, "-u", "--url", help="key server URL (no key server is configured in sbuild)")
    add_flag(p, "-j", "--json", action="store_true", help="print JSON")
    add_output_flags(p)
    p.set_defaults(handler=_verify)


def _fail(message: str, cause: Exception | None = None):  # noqa: ANN202
    from builder.signing.errors import IntegrityError

    err = IntegrityError(f"Failed to verify container: {message}")
    if cause is not None and getattr(cause, "changed", None):
        err.changed = cause.changed
    return err


def _key_material(args: argparse.Namespace):  # noqa: ANN202
    """(dsse public keys or None, VerifyKeys or None), logging the INFO line Apptainer does."""
    from builder.signing import dsse
    from builder.signing.errors import SigningError

    if args.certificate:
        from builder.signing.x509 import certificate_key

        log.info("Verifying image with key material from certificate '%s'", args.certificate)
        if args.ocsp_verify:
            raise UsageError("--ocsp-verify: OCSP revocation checks are not supported by sbuild")
        try:
            return [certificate_key(args.certificate, args.certificate_intermediates, args.certificate_roots)], None
        except SigningError as e:
            if e.message.startswith("Failed to load"):
                raise
            raise SigningError(f"Failed to verify container: {e.message}") from None
    if args.key:
        log.info("Verifying image with key material from '%s'", args.key)
        try:
            return [dsse.load_public_key(args.key)], None
        except SigningError as e:
            raise SigningError(f"Failed to load key material: {e}") from None
    from builder.signing.keyring import VerifyKeys

    log.info("Verifying image with PGP key material")
    if args.url:
        log.warning("no key server is configured in sbuild: verifying with local keys only (ignoring %s)", args.url)
    return None, VerifyKeys()


def run_verify(path: str, *, dsse_keys=None, pgp=None, groups=(), objects=(), legacy=False,  # noqa: ANN001
               legacy_all=False, on_result=None) -> None:
    """Verify ``path``; IntegrityError ``integrity: …`` on failure (also for a file that is
    not a SIF: ``…: not a sif file``)."""
    from base.errors import ImageError
    from builder.signing import IntegrityError, SignImage, tasks_for, verify_image

    try:
        image = SignImage(path)
    except ImageError as e:
        raise IntegrityError(e.message) from None
    with image:
        try:
            if legacy and not legacy_all and not groups and not objects:
                prim = image.layout.primary_partition()
                if prim is None:
                    raise IntegrityError("object not found")
                objects = [prim.id]
            tasks = tasks_for(image, list(groups), list(objects), legacy=legacy, legacy_all=legacy_all)
            verify_image(image, tasks, dsse_keys=dsse_keys, pgp=pgp,
                         on_result=None if on_result is None else lambda r: on_result(image, r))
        except IntegrityError as e:
            raise IntegrityError(f"integrity: {e}", changed=e.changed, object_id=e.object_id) from None


def print_result(image, result, out=None) -> None:  # noqa: ANN001
    """One signature's block, as Apptainer's ``outputVerify``."""
    out = out or sys.stdout
    from builder.signing.image import group_of, linked

    if result.signer is not None:
        uid, fpr, source = result.signer
        tag = f"[{source}]"
        print(f"{tag:<18} Signing entity: {uid}", file=out)
        print(f"{tag:<18} Fingerprint: {fpr}", file=out)
    if result.verified:
        print("Objects verified:", file=out)
        print(f"{'ID':<4}|{'GROUP':<8}|{'LINK':<8}|TYPE", file=out)
        print("-" * 48, file=out)
    for d in result.verified:
        group = str(group_of(d)) if group_of(d) else "NONE"
        lid, is_group = linked(d)
        link = "NONE" if not lid else f"{lid} (G)" if is_group else str(lid)
        print(f"{d.id:<4}|{group:<8}|{link:<8}|{d.type_name}", file=out)
    if result.error is not None:
        print(f"\nError encountered during signature verification: {result.error}", file=out)


def json_entries(image, result, keys_local) -> list[dict]:  # noqa: ANN001
    """Apptainer's ``SignerKeys`` entries for one signature."""
    name, fpr, local, check = "unknown", "", False, False
    if result.signer is not None:
        name, fpr, local, check = result.signer[0], result.signer[1].lower(), result.signer[2] == "LOCAL", True
    rows = [{"Signer": {"Partition": d.type_name, "Name": name, "Fingerprint": fpr, "KeyLocal": local,
                        "KeyCheck": check, "DataCheck": True}} for d in result.verified]
    err = result.error
    if err is not None and err.object_id:
        d = image.by_id(err.object_id)
        if d is not None:
            rows.append({"Signer": {"Partition": d.type_name, "Name": name, "Fingerprint": fpr, "KeyLocal": local,
                                    "KeyCheck": check, "DataCheck": False}})
    return rows


def _verify(args: argparse.Namespace) -> int:
    from base.gojson import marshal_indent
    from builder.signing import IntegrityError

    if args.group_id is not None and args.group_id <= 0:
        raise _fail("integrity: invalid group ID")
    if args.sif_id is not None and args.sif_id <= 0:
        raise _fail("integrity: invalid object ID")
    dsse_keys, pgp = _key_material(args)
    groups = [args.group_id] if args.group_id else []
    objects = [args.sif_id] if args.sif_id else []
    kw = dict(dsse_keys=dsse_keys, pgp=pgp, groups=groups, objects=objects, legacy=args.legacy_insecure,
              legacy_all=args.legacy_insecure and args.all)
    try:
        if args.json:
            doc = {"Signatures": 0, "SignerKeys": []}

            def collect(image, result) -> None:  # noqa: ANN001
                doc["Signatures"] += 1
                doc["SignerKeys"] += json_entries(image, result, None)

            error = None
            try:
                run_verify(args.image, on_result=collect, **kw)
            except IntegrityError as e:
                error = e
            doc["SignerKeys"] = doc["SignerKeys"] or None
            print(marshal_indent(doc, 2))
            if error is not None:
                raise _fail(str(error), error)
        else:
            try:
                run_verify(args.image, on_result=print_result, **kw)
            except IntegrityError as e:
                sys.stdout.flush()
                raise _fail(str(e), e) from None
    finally:
        if pgp is not None:
            pgp.close()
    log.info("Verified signature(s) from image '%s'", args.image)
    return 0
