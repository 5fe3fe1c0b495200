"""The integrity metadata and DSSE envelopes equal the SIF library's goldens byte for byte
(``pkg/integrity/testdata``: every hash it supports), and the keyids are sigstore's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

HASHES = ["SHA224", "SHA256", "SHA384", "SHA512", "SHA512_224", "SHA512_256"]


@pytest.fixture(scope="session")
def testdata(conformance: Path) -> Path:
    path = conformance / "sif" / "pkg" / "integrity" / "testdata"
    if not path.is_dir():
        pytest.skip(f"integrity goldens not found at {path}")
    return path


def _golden(testdata: Path, test: str, name: str) -> bytes:
    data = (testdata / test / f"{name}.golden").read_bytes()
    assert data.endswith(b"\n")  # json.Encoder's newline; what is signed has none
    return data[:-1]


def _digest(name: str, data: bytes) -> str:
    from builder.signing.metadata import digest_string, new_hash

    h = new_hash(name)
    h.update(data)
    return digest_string(name, h.digest())


@pytest.mark.parametrize("alg", HASHES)
def test_digest_json(testdata, alg):
    from builder.signing.metadata import parse_digest

    text = json.loads(_golden(testdata, "TestDigest_MarshalJSON", alg))
    name, value = parse_digest(text)
    assert name == alg.lower() and json.dumps(f"{name}:{value.hex()}").encode() == _golden(
        testdata, "TestDigest_MarshalJSON", alg)


@pytest.mark.parametrize("alg", HASHES)
def test_header_metadata(testdata, alg):
    header = (testdata / "sources" / "header.bin").read_bytes()
    got = json.dumps({"digest": _digest(alg.lower(), header)}, separators=(",", ":")).encode()
    assert got == _golden(testdata, "TestGetHeaderMetadata", alg)


@pytest.mark.parametrize("alg,rid", [(a, 0) for a in HASHES] + [("RelativeID", 1)])
def test_object_metadata(testdata, alg, rid):
    name = "sha256" if alg == "RelativeID" else alg.lower()
    descr = (testdata / "sources" / f"descr-rid{rid}.bin").read_bytes()
    entry = {"relativeId": rid, "descriptorDigest": _digest(name, descr), "objectDigest": _digest(name, b"blah")}
    assert json.dumps(entry, separators=(",", ":")).encode() == _golden(testdata, "TestGetObjectMetadata", alg)


@pytest.mark.parametrize("case,ids,alg", [("Object1", [1], "sha256"), ("Object2", [2], "sha256")]
                         + [(a, [1, 2], a.lower()) for a in ("SHA224", "SHA256", "SHA384", "SHA512")])
def test_image_metadata_of_the_golden_image(testdata, images, case, ids, alg):
    from builder.signing import IntegrityError, SignImage
    from builder.signing.metadata import descriptor_bytes, header_bytes, image_metadata, metadata_json

    with SignImage(str(images / "one-group.sif")) as image:
        objects = [image.by_id(i) for i in ids]
        got = metadata_json(image_metadata(image, 1, objects, alg))
        assert got == _golden(testdata, "TestGetImageMetadata", case)
        assert header_bytes(image.header_raw) == bytes(32) + b"SIF_MAGIC\0" + b"01\0" + bytes(16)
        assert len(descriptor_bytes(image.raw_descriptor(objects[0]), 0)) == 557
        with pytest.raises(IntegrityError, match="minimum ID value invalid"):
            image_metadata(image, 2, [image.by_id(1)], "sha256")
    if case == "SHA256":
        assert len(got) == 517
        assert hashlib.sha256(got).hexdigest() == "1cec2ca596f2ad0c50020e601544d3b176925714379e22b87a368d55d9d3aa02"


def test_unsupported_hashes_are_refused():
    from builder.signing import IntegrityError
    from builder.signing.metadata import new_hash, parse_digest

    for name in ("md5", "sha1", "blake2b"):
        with pytest.raises(IntegrityError, match="hash algorithm unsupported"):
            new_hash(name)
    with pytest.raises(IntegrityError):
        parse_digest("sha256:abcd")  # wrong length


@pytest.mark.parametrize("case,key_names,alg", [("ED25519", ["ed25519"], "sha256"), ("RSA_SHA256", ["rsa"], "sha256"),
                                                ("RSA_SHA384", ["rsa"], "sha384"), ("RSA_SHA512", ["rsa"], "sha512"),
                                                ("Multi", ["rsa", "rsa"], "sha256")])
def test_dsse_envelopes(testdata, keys, case, key_names, alg):
    from builder.signing.dsse import load_private_key, load_public_key, sign_envelope, verify_envelope

    golden = (testdata / "Test_dsseEncoder_signMessage" / f"{case}.golden").read_bytes()
    signers = [load_private_key(str(keys / f"{k}-private.pem")) for k in key_names]
    body = b'{"One":1,"Two":2}\n'
    assert sign_envelope(body, signers, alg) == golden
    payload, accepted = verify_envelope(golden, [load_public_key(str(keys / f"{key_names[0]}-public.pem"))], alg)
    assert payload == body and len(accepted) == 1


def test_keyids_are_sigstores(keys):
    from builder.signing.dsse import keyid, load_public_key

    assert {k: keyid(load_public_key(str(keys / f"{k}-public.pem"))) for k in ("ed25519", "rsa", "ecdsa")} == {
        "ed25519": "SHA256:x6l8ZblpSSXGaPMCzySedWg88BwIFcz8jlPb6el0mFs",
        "rsa": "SHA256:BhCwr7qZulYcOMSl2Jt2DuYHxHNnN6th4NdMqR/PGa4",
        "ecdsa": "SHA256:13cNV0A11AxgIQYCvlDmJlRi0CjRtjnYF47RzrMhlaU"}


def test_ecdsa_signs_and_verifies(keys):
    from builder.signing import IntegrityError
    from builder.signing.dsse import load_private_key, load_public_key, sign_envelope, verify_envelope

    env = sign_envelope(b"{}", [load_private_key(str(keys / "ecdsa-private.pem"))], "sha256")
    assert verify_envelope(env, [load_public_key(str(keys / "ecdsa-public.pem"))])[0] == b"{}"
    with pytest.raises(IntegrityError, match="Found: 0, Expected 1"):
        verify_envelope(env, [load_public_key(str(keys / "rsa-public.pem"))])
