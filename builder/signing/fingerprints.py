"""The check Apptainer makes of a SIF base image in a build (``Fingerprints:``), and the
report of a verified pull.

``Fingerprints:`` (case-insensitive key; the value cut at ``#``, split on ``,``, each entry
trimmed, compared case-insensitively; empty means no check): the image must pass a full
default verify with PGP key material only (global and local keyrings), and then every listed
fingerprint must have signed every group. A failure says which group lacked which key.
Without the header a SIF base is still verified: a missing signature is only logged at debug
level, any other failure is a warning and the build goes on (as Apptainer does).

``verify_pull``: a ``library://`` pull's PGP verify (a failure warns, ``Skipping container
verification``, and the pull succeeds). ``warn_if_signed``: converting a signed SIF to another
format says that the signatures do not carry over. ``signers``: who signed what, for
``inspect``.
"""

from __future__ import annotations

import logging

from builder.images.sif import SIF_MAGIC
from builder.signing.errors import IntegrityError

__all__ = ["parse_fingerprints", "check_base", "verify_quietly", "verify_pull", "warn_if_signed", "is_sif", "signers"]

log = logging.getLogger("sbuild.signing")


def parse_fingerprints(value: str | None) -> list[str]:
    text = (value or "").split("#", 1)[0]
    if not text.strip():
        return []
    return [entry.strip() for entry in text.split(",")]


def is_sif(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(42)[32:42] == SIF_MAGIC
    except OSError:
        return False


def _verify(path: str):  # noqa: ANN202
    """(the tasks' signers per group) after a full default PGP verify of ``path``."""
    from builder.signing.image import SignImage
    from builder.signing.keyring import VerifyKeys
    from builder.signing.verify import signature_metadata, tasks_for, verify_image

    with VerifyKeys() as keys, SignImage(path) as image:
        tasks = tasks_for(image)
        verify_image(image, tasks, pgp=keys)
        signers = {}
        for task in tasks:
            signers[task.group] = {signature_metadata(s)[1].hex().upper() for s in task.signatures()}
        return signers


def check_base(path: str, fingerprints: str | None, *, what: str) -> None:
    """Apptainer's check of the SIF base ``path`` (``what``: the agent, for messages)."""
    wanted = parse_fingerprints(fingerprints)
    if not wanted:
        verify_quietly(path, what=what)
        return
    try:
        signers = _verify(path)
    except IntegrityError as e:
        raise IntegrityError(f"{what}: while checking fingerprint: integrity: {e}", changed=e.changed,
                             hint="Fingerprints: accepts only images every listed key signed (PGP)") from None
    missing = [(group, fp) for group, have in sorted(signers.items()) for fp in wanted
               if fp.upper() not in have]
    if missing:
        lacks = "; ".join(f"group {g} lacks {fp or '(an empty entry)'}" for g, fp in missing)
        raise IntegrityError(f"{what}: while checking fingerprint: image not signed by required entities: {lacks}",
                             hint="the base must be signed by every key in Fingerprints:, in every group")
    log.info("%s: base image signed by %s", what, ", ".join(wanted))


def verify_quietly(path: str, *, what: str) -> bool:
    """Verify a SIF base without ``Fingerprints:``: warn on failure, never fail the build."""
    try:
        _verify(path)
    except IntegrityError as e:
        if "signature not found" in str(e) or "no groups found" in str(e):
            log.debug("%s: %s", what, e)
        else:
            log.warning("%s: integrity: %s", what, e)
            log.warning("Bootstrap image could not be verified, but build will continue.")
        return False
    except Exception as e:  # noqa: BLE001 - a verify that cannot run (no gpg) must not break a build
        log.warning("%s: could not verify the base image: %s", what, e)
        return False
    return True


def verify_pull(path: str) -> bool:
    """Apptainer's verify after a ``library://`` pull: warn on failure, never fail."""
    try:
        _verify(path)
    except IntegrityError as e:
        log.warning("integrity: %s", e)
        log.warning("Skipping container verification")
        return False
    except Exception as e:  # noqa: BLE001 - no gpg: the pull itself is fine
        log.warning("could not verify %s: %s", path, e)
        log.warning("Skipping container verification")
        return False
    return True


def warn_if_signed(path: str, fmt: str) -> None:
    """Warn when the SIF ``path`` has signatures and is being turned into ``fmt``."""
    if fmt == "sif" or not is_sif(path):
        return
    from builder.signing.image import SignImage

    try:
        with SignImage(path) as image:
            count = len(image.signatures())
    except Exception:  # noqa: BLE001 - the conversion reports unreadable images itself
        return
    if count:
        log.warning("%s carries %d signature(s): they do not carry over to the %s, which cannot be signed "
                    "or verified", path, count, "sandbox" if fmt == "sandbox" else f"{fmt} image")


def signers(path: str) -> list[dict]:
    """One entry per signature: id, link, format (DSSE, PGP, legacy), fingerprint (hex or
    ""), and for PGP the signer's user ID when a keyring knows the key (not verified here)."""
    from builder.signing.dsse import is_dsse
    from builder.signing.image import SignImage, linked
    from builder.signing.verify import signature_metadata

    out = []
    with SignImage(path) as image:
        for sig in image.signatures():
            blob = image.read(sig)
            lid, is_group = linked(sig)
            try:
                _, fp = signature_metadata(sig)
            except IntegrityError:
                fp = b""
            kind = "DSSE" if is_dsse(blob) else "legacy PGP" if b"SIFHASH:" in blob[:200] else "PGP"
            keyids = []
            if kind == "DSSE":
                import json

                keyids = [s.get("keyid", "") for s in json.loads(blob).get("signatures", []) if isinstance(s, dict)]
            out.append({"id": sig.id, "link": f"{lid} (G)" if is_group else str(lid), "format": kind,
                        "fingerprint": fp.hex().upper(), "keyids": keyids})
    return out
