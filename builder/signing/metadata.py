"""The integrity metadata a SIF signature covers, byte for byte as the SIF library's
``pkg/integrity`` computes it (metadata version 1).

Signed: the header's launch script, magic, version and UUID (61 bytes); per object, the
descriptor's data type, used flag, ID relative to the group's lowest ID, link, size,
creation time, UID, GID, name and extra (557 bytes); and the object's data. The JSON is
Go's compact ``json.Marshal`` output, keys in struct order, objects sorted by ID, no
trailing newline. Digests are ``"alg:hex"`` for sha224, sha256, sha384, sha512,
sha512_224 and sha512_256 (signing uses sha256).

Not covered (so changing them never breaks a signature): the arch, header times and
counts, descriptor IDs, group IDs, offsets, padded sizes, modification times, and the
padding between objects.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from builder.images.sif import SifDescriptor
from builder.signing.errors import IntegrityError
from builder.signing.image import SignImage

__all__ = ["HASHES", "SIF_HASH_TYPES", "new_hash", "digest_string", "parse_digest", "header_bytes",
           "descriptor_bytes", "image_metadata", "metadata_json", "check_metadata", "Metadata"]

# digest name -> hashlib name (crypto.Hash values the SIF library accepts in digests)
HASHES = {"sha224": "sha224", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512",
          "sha512_224": "sha512_224", "sha512_256": "sha512_256"}
# the hash type code in a signature descriptor's Extra -> hashlib name
SIF_HASH_TYPES = {1: "sha256", 2: "sha384", 3: "sha512", 4: "blake2s", 5: "blake2b"}


def new_hash(name: str):  # noqa: ANN201
    if name not in HASHES:
        raise IntegrityError("hash algorithm unsupported")
    return hashlib.new(HASHES[name])


def digest_string(name: str, value: bytes) -> str:
    return f"{name}:{value.hex()}"


def parse_digest(text: object) -> tuple[str, bytes]:
    """``"alg:hex"`` -> (alg, value); IntegrityError for anything the Go library refuses."""
    if not isinstance(text, str) or ":" not in text:
        raise IntegrityError("digest: malformed digest")
    name, _, hexval = text.partition(":")
    if name not in HASHES:
        raise IntegrityError("hash algorithm unsupported")
    try:
        value = bytes.fromhex(hexval)
    except ValueError:
        raise IntegrityError(f"digest: malformed value {hexval[:20]!r}") from None
    if len(value) != new_hash(name).digest_size:
        raise IntegrityError("digest: value length invalid")
    return name, value


def header_bytes(raw_header: bytes) -> bytes:
    """The 61 header bytes that are signed."""
    return raw_header[0:45] + raw_header[48:64]


def descriptor_bytes(raw: bytes, relative_id: int) -> bytes:
    """The 557 descriptor bytes that are signed."""
    return (raw[0:5] + struct.pack("<I", relative_id) + raw[13:17] + raw[25:33] + raw[41:49]
            + raw[57:73] + raw[73:585])


def _digest(name: str, data: bytes) -> str:
    h = new_hash(name)
    h.update(data)
    return digest_string(name, h.digest())


def _object_digests(image: SignImage, d: SifDescriptor, min_id: int, name: str) -> tuple[str, str]:
    descr = _digest(name, descriptor_bytes(image.raw_descriptor(d), d.id - min_id))
    h = new_hash(name)
    image.feed(d, h)
    return descr, digest_string(name, h.digest())


def image_metadata(image: SignImage, min_id: int, objects: list[SifDescriptor],
                   name: str = "sha256") -> dict[str, Any]:
    """The metadata dict for ``objects`` (their IDs relative to ``min_id``)."""
    entries = []
    for d in sorted(objects, key=lambda o: o.id):
        if d.id < min_id:
            raise IntegrityError("minimum ID value invalid")
        descr, obj = _object_digests(image, d, min_id, name)
        entries.append({"relativeId": d.id - min_id, "descriptorDigest": descr, "objectDigest": obj})
    return {"version": 1, "header": {"digest": _digest(name, header_bytes(image.header_raw))},
            "objects": entries}


def metadata_json(metadata: dict[str, Any]) -> bytes:
    """Go's ``json.Marshal`` of the metadata (compact, no trailing newline)."""
    return json.dumps(metadata, separators=(",", ":")).encode()


class Metadata:
    """Signed metadata read back from a signature: the header digest and, per absolute
    object ID, the descriptor and object digests."""

    def __init__(self, payload: bytes, min_id: int) -> None:
        try:
            doc = json.loads(payload)
            header = parse_digest(_field(doc, "header")["digest"] if isinstance(_field(doc, "header"), dict)
                                  else None)
            objects: dict[int, tuple[tuple[str, bytes], tuple[str, bytes]]] = {}
            for entry in _field(doc, "objects") or []:
                rel = _field(entry, "relativeId") or 0
                if not isinstance(rel, int) or rel < 0:
                    raise IntegrityError("json: relativeId is not an unsigned integer")
                objects[rel + min_id] = (parse_digest(_field(entry, "descriptorDigest")),
                                         parse_digest(_field(entry, "objectDigest")))
        except (ValueError, TypeError, AttributeError) as e:
            raise IntegrityError(f"json: {e}") from None
        self.header, self.objects = header, objects


def _field(doc: object, key: str) -> Any:
    """A JSON object's field, matched case-insensitively as Go's json.Unmarshal does."""
    if not isinstance(doc, dict):
        raise TypeError(f"cannot unmarshal {type(doc).__name__} into metadata")
    if key in doc:
        return doc[key]
    for k, v in doc.items():
        if k.lower() == key.lower():
            return v
    return None


def check_metadata(image: SignImage, md: Metadata, objects: list[SifDescriptor], min_id: int,
                   verified: list[SifDescriptor]) -> None:
    """Compare the image with signed metadata, as Go's ``imageMetadata.matches``: the header,
    then each object's descriptor and data. Objects that pass are appended to ``verified``;
    the first mismatch raises IntegrityError naming it."""
    name, value = md.header
    h = new_hash(name)
    h.update(header_bytes(image.header_raw))
    if h.digest() != value:
        raise IntegrityError("header integrity compromised", changed="header")
    for d in objects:
        if d.id not in md.objects:
            raise IntegrityError(f"object {d.id}: object not signed")
        (dname, dvalue), (oname, ovalue) = md.objects[d.id]
        h = new_hash(dname)
        h.update(descriptor_bytes(image.raw_descriptor(d), d.id - min_id))
        if h.digest() != dvalue:
            raise IntegrityError(f"data object descriptor integrity compromised: {d.id}",
                                 changed=f"descriptor {d.id}")
        h = new_hash(oname)
        image.feed(d, h)
        if h.digest() != ovalue:
            raise IntegrityError(f"data object integrity compromised: {d.id}", changed=f"object {d.id}",
                                 object_id=d.id)
        verified.append(d)
