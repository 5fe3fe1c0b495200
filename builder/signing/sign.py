"""Signing a SIF as the SIF library's ``integrity.Signer`` does: one Signature object per
group (every group by default, ascending), each linked to its group and holding a DSSE
envelope or a PGP clear-signature of the group's metadata.

Selection: ``groups`` signs those groups whole; ``objects`` signs each object alone (one
signature per object, still linked to the object's group, relative IDs still counted from
the group's lowest ID). Both together give a signature per group and per object, groups
first. The metadata is hashed with SHA-256 and the descriptor's hash type is 1 (SHA256);
a PGP signature's descriptor holds the signer's primary fingerprint.

``Signer`` is what makes the envelope: ``DsseSigner`` (PEM private keys, all in one
envelope) or ``PgpSigner`` (a gpg home and a primary key fingerprint).
"""

from __future__ import annotations

from builder.signing import dsse
from builder.signing.errors import IntegrityError
from builder.signing.image import SignImage, group_of
from builder.signing.metadata import image_metadata, metadata_json

__all__ = ["DsseSigner", "PgpSigner", "sign_image", "plan"]


class DsseSigner:
    """DSSE envelopes with ``keys`` (cryptography private keys)."""

    fingerprint = b""

    def __init__(self, keys: list, *, trailing_newline: bool = False) -> None:
        self.keys, self.trailing_newline = keys, trailing_newline

    def sign(self, payload: bytes) -> bytes:
        return dsse.sign_envelope(payload, self.keys, "sha256", trailing_newline=self.trailing_newline)


class PgpSigner:
    """Clear-signatures by the primary key ``fpr`` held in ``gpg`` (a ``pgp.Gpg``)."""

    def __init__(self, gpg, fpr: str, passphrase: str | None = None) -> None:  # noqa: ANN001
        self.gpg, self.fpr, self._passphrase = gpg, fpr.upper(), passphrase
        self.fingerprint = bytes.fromhex(self.fpr)

    def sign(self, payload: bytes) -> bytes:
        return self.gpg.clearsign(payload, self.fpr, self._passphrase)


def plan(image: SignImage, groups: list[int] = (), objects: list[int] = ()) -> list[tuple[int, list]]:  # type: ignore[assignment]
    """(group, descriptors) per signature to make."""
    if not groups and not objects:
        groups = image.group_ids()
        if not groups:
            raise IntegrityError("no groups found")
    out = []
    for g in sorted(set(groups)):
        members = image.group_objects(g)
        if not members:
            raise IntegrityError("group not found")
        out.append((g, members))
    for oid in sorted(set(objects)):
        d = image.by_id(oid)
        if d is None:
            raise IntegrityError("object not found")
        if not group_of(d):
            raise IntegrityError("object not associated with a group")
        out.append((group_of(d), [d]))
    return out


def sign_image(path: str, signer, groups: list[int] = (), objects: list[int] = (), *,  # noqa: ANN001
               now: int | None = None) -> list[int]:
    """Append the signatures to the SIF at ``path``; the new Signature objects' IDs."""
    ids = []
    with SignImage(path, writable=True) as image:
        for group, members in plan(image, groups, objects):
            min_id = min(d.id for d in image.group_objects(group))
            payload = metadata_json(image_metadata(image, min_id, members, "sha256"))
            blob = signer.sign(payload)
            ids.append(image.append_signature(blob, group, 1, signer.fingerprint, now=now))
    return ids
