"""Verifying a SIF's signatures with the SIF library's rules (``pkg/integrity/verify.go``).

Tasks: one per group by default (every group, ascending), or per ``groups``/``objects``
asked. Each task's linked signatures are checked in descriptor order and the first error
ends the run: a missing signature, a format without key material, a signature that does
not verify, a PGP signer whose fingerprint is not the one in the descriptor, a group whose
signed object set differs from its objects, then the header, descriptor and object
digests. ``on_result`` is called once per signature with a ``SignatureResult`` (the
objects that passed, the error if any, the signer), as Apptainer's callback is; it is how
``sbuild verify`` prints its table.

Legacy mode (``legacy=True``, Singularity ≤ 3.5 ``SIFHASH`` signatures, header and
descriptors unprotected) counts only legacy signatures; ``legacy_all`` makes one task per
grouped object.

Key material: ``dsse_keys`` (public keys, for DSSE envelopes) and/or ``pgp`` (a
``keyring.VerifyKeys``: gpg with the global and local keyrings imported).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from builder.images.sif import DATA_SIGNATURE, SifDescriptor
from builder.signing import dsse
from builder.signing.errors import IntegrityError
from builder.signing.image import SignImage, group_of, linked
from builder.signing.metadata import SIF_HASH_TYPES, Metadata, check_metadata
from builder.signing.pgp import is_clearsign

__all__ = ["SignatureResult", "verify_image", "signature_metadata", "Task", "tasks_for"]


class SignatureResult:
    """One signature's outcome. ``signer``: (user ID, fingerprint hex, source) for PGP,
    None for DSSE; ``keys``: the DSSE public keys that verified."""

    __slots__ = ("signature", "verified", "error", "signer", "keys")

    def __init__(self, signature: SifDescriptor) -> None:
        self.signature = signature
        self.verified: list[SifDescriptor] = []
        self.error: IntegrityError | None = None
        self.signer: tuple[str, str, str] | None = None
        self.keys: list = []


def signature_metadata(sig: SifDescriptor) -> tuple[str, bytes]:
    """(hashlib name, 20-byte fingerprint or b"") from a signature descriptor's Extra."""
    ht = int.from_bytes(sig.extra[0:4], "little", signed=True)
    if ht not in SIF_HASH_TYPES:
        raise IntegrityError("hash algorithm unsupported")
    fp = sig.extra[4:24]
    return SIF_HASH_TYPES[ht], (b"" if fp == bytes(20) else fp)


def _is_legacy(image: SignImage, sig: SifDescriptor) -> bool:
    blob = image.read(sig)
    if not is_clearsign(blob):
        return False
    body = blob.split(b"\n\n", 1)[1] if b"\n\n" in blob else b""
    return body.replace(b"\r\n", b"\n").startswith(b"SIFHASH:\n")


class Task:
    """What one verification step checks: ``group`` (the objects ``objects``, ``subset``
    when only some were asked) or, in legacy mode, one object (``object_link``)."""

    def __init__(self, image: SignImage, group: int, objects: list[SifDescriptor], *, subset: bool = False,
                 legacy: bool = False, object_link: int = 0) -> None:
        self.image, self.group, self.objects, self.subset = image, group, objects, subset
        self.legacy, self.object_link = legacy, object_link

    def signatures(self) -> list[SifDescriptor]:
        if self.object_link:
            sigs = [s for s in self.image.signatures() if linked(s) == (self.object_link, False)]
            if not sigs:
                raise IntegrityError(f"signature not found for object {self.object_link}")
            return sigs
        sigs = [s for s in self.image.signatures()
                if linked(s) == (self.group, True) and _is_legacy(self.image, s) == self.legacy]
        if not sigs:
            raise IntegrityError(f"signature not found for object group {self.group}")
        return sigs


def tasks_for(image: SignImage, groups: list[int] = (), objects: list[int] = (), *,  # type: ignore[assignment]
              legacy: bool = False, legacy_all: bool = False) -> list[Task]:
    groups, objects = sorted(set(groups)), sorted(set(objects))
    if legacy_all:
        objects = sorted({*objects, *(d.id for d in image.descriptors
                                      if d.data_type != DATA_SIGNATURE and group_of(d))})
    if not groups and not objects:
        groups = image.group_ids()
        if not groups:
            raise IntegrityError("no groups found")
    tasks = []
    for g in groups:
        members = image.group_objects(g)
        if not members:
            raise IntegrityError("group not found")
        tasks.append(Task(image, g, members, legacy=legacy))
    for oid in objects:
        d = image.by_id(oid)
        if d is None:
            raise IntegrityError("object not found")
        if legacy:
            tasks.append(Task(image, group_of(d), [d], legacy=True, object_link=oid))
        else:
            tasks.append(Task(image, group_of(d), [d], subset=True))
    return tasks


def _decode(sig: SifDescriptor, blob: bytes, envelope: bool, hash_name: str, dsse_keys, pgp,  # noqa: ANN001
            result: SignatureResult) -> bytes:
    try:
        if envelope:
            payload, result.keys = dsse.verify_envelope(blob, dsse_keys, hash_name)
            return payload
        verdict = pgp.verify(blob)
    except IntegrityError as e:
        raise IntegrityError(f"signature object {sig.id} not valid: {e}") from None
    result.signer = (verdict.uid, verdict.fingerprint, pgp.source(verdict.fingerprint))
    return verdict.plaintext


def _check_signature(task: Task, sig: SifDescriptor, blob: bytes, envelope: bool, dsse_keys, pgp,  # noqa: ANN001
                     result: SignatureResult) -> None:
    """Check ``sig`` (its bytes ``blob``: a DSSE ``envelope``, else a PGP clear-signature)."""
    image = task.image
    hash_name, fp = signature_metadata(sig)
    payload = _decode(sig, blob, envelope, hash_name, dsse_keys, pgp, result)
    if task.legacy:
        payload = payload.rstrip(b"\n")
    elif payload.endswith(b"\n"):
        payload = payload[:-1]
    min_id = min((d.id for d in image.group_objects(task.group)), default=0)
    md = None if task.legacy else _metadata(sig, payload, min_id)
    if result.signer is not None and bytes.fromhex(result.signer[1]) != fp:
        raise IntegrityError("fingerprint in descriptor does not correspond to signing entity")
    if task.legacy:
        _check_legacy(task, hash_name, payload, result)
        return
    if not task.subset:
        _ids_match(md, task.objects)
    check_metadata(image, md, task.objects, min_id, result.verified)


def _metadata(sig: SifDescriptor, payload: bytes, min_id: int) -> Metadata:
    try:
        return Metadata(payload, min_id)
    except IntegrityError as e:
        raise IntegrityError(f"signature object {sig.id} not valid: {e}") from None


def _ids_match(md: Metadata, objects: list[SifDescriptor]) -> None:
    ids = {d.id for d in objects}
    for d in objects:
        if d.id not in md.objects:
            raise IntegrityError(f"object {d.id}: object not signed")
    for oid in sorted(md.objects):
        if oid not in ids:
            raise IntegrityError(f"object {oid}: signed object not found")


def _check_legacy(task: Task, hash_name: str, payload: bytes, result: SignatureResult) -> None:
    text = payload[len(b"SIFHASH:\n"):] if payload.startswith(b"SIFHASH:\n") else payload
    try:
        want = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError("encoding/hex: invalid byte in legacy digest") from None
    if hash_name not in ("sha256", "sha384", "sha512"):
        raise IntegrityError("hash algorithm unsupported")
    h = hashlib.new(hash_name)
    for d in task.objects:
        task.image.feed(d, h)
    if h.digest() != want:
        oid = task.object_link or None
        raise IntegrityError("data object integrity compromised" + (f": {oid}" if oid else ""),
                             changed=f"object {oid}" if oid else "group data", object_id=oid)
    result.verified = list(task.objects)


def verify_image(image: SignImage, tasks: list[Task], *, dsse_keys: list | None = None, pgp=None,  # noqa: ANN001
                 on_result: Callable[[SignatureResult], None] | None = None) -> None:
    """Run ``tasks``; raise the first IntegrityError (its text without ``integrity: ``)."""
    for d in image.descriptors:
        if not group_of(d) and d.data_type != DATA_SIGNATURE:
            raise IntegrityError("non-signature object not associated with object group")
    for task in tasks:
        for sig in task.signatures():
            blob = image.read(sig)
            envelope = dsse.is_dsse(blob)
            if envelope:
                if dsse_keys is None:
                    raise IntegrityError("key material not provided for DSSE envelope signature")
            elif is_clearsign(blob):
                if pgp is None:
                    raise IntegrityError("key material not provided for PGP clear-sign signature")
            else:
                raise IntegrityError("signature format not recognized")
            result = SignatureResult(sig)
            try:
                _check_signature(task, sig, blob, envelope, dsse_keys, pgp, result)
            except IntegrityError as e:
                result.error = e
            if on_result is not None:
                on_result(result)
            if result.error is not None:
                raise result.error
