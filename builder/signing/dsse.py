"""DSSE envelopes over SIF metadata with PEM keys, as the SIF library writes and reads them
(sigstore's multi-signer DSSE, securesystemslib's verifier with threshold 1).

Envelope: ``{"payloadType":"application/vnd.sylabs.sif-metadata+json","payload":B64,
"signatures":[{"keyid":K,"sig":B64}…]}`` (standard padded base64, Go's compact
``json.Marshal``; older SIF libraries added a trailing newline: ``trailing_newline``).
Signed bytes: the PAE ``DSSEv1 <len> <type> <len> <payload>``. Ed25519 signs the PAE;
RSA is PKCS#1 v1.5 and ECDSA DER, both over the hash the signature descriptor names.
``keyid`` is ``SHA256:`` + unpadded base64 of the SHA-256 of the SSH wire public key.

Limits: keys are PEM files (PKCS#8/PKCS#1/SEC1 private, SubjectPublicKeyInfo public) or
x509 certificates' keys; no KMS, no Sigstore keyless signing.
"""

from __future__ import annotations

import base64
import hashlib
import json

from builder.signing.errors import IntegrityError, SigningError

__all__ = ["PAYLOAD_TYPE", "pae", "keyid", "load_private_key", "load_public_key", "sign_envelope",
           "verify_envelope", "is_dsse"]

PAYLOAD_TYPE = "application/vnd.sylabs.sif-metadata+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _hash(name: str):  # noqa: ANN202
    from cryptography.hazmat.primitives import hashes

    try:
        return {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
                "sha224": hashes.SHA224}[name]()
    except KeyError:
        raise IntegrityError("hash algorithm unsupported") from None


def keyid(public_key) -> str:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    ssh = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    wire = base64.b64decode(ssh.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(wire).digest()).decode().rstrip("=")


def _read(path: str, where: str) -> bytes:
    """The bytes of a key file; SigningError ``failed to load key material{where}: …`` if unreadable."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise SigningError(f"failed to load key material{where}: {e.strerror}") from None


def load_private_key(path: str, passphrase: bytes | None = None):  # noqa: ANN201
    """A PEM private key; SigningError (never showing the key) when it cannot be used."""
    from cryptography.hazmat.primitives import serialization

    data = _read(path, f"from {path!r}")
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as e:  # encrypted but no passphrase, or the reverse
        raise SigningError(f"failed to load key material from {path!r}: "
                           + ("the key is encrypted: a passphrase is needed" if passphrase is None
                              else "the key is not encrypted") ) from e
    except ValueError:
        raise SigningError(f"failed to load key material from {path!r}: not a PEM private key, "
                           "or a wrong passphrase") from None


def load_public_key(path: str):  # noqa: ANN201
    """A PEM public key (or the public half of a PEM private key, as sigstore accepts)."""
    from cryptography.hazmat.primitives import serialization

    data = _read(path, f": {path}")
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        pass
    try:
        return serialization.load_pem_private_key(data, password=None).public_key()
    except (ValueError, TypeError):
        raise SigningError(f"failed to load key material: {path}: not a PEM public key") from None


def _sign(key, message: bytes, hash_name: str) -> bytes:  # noqa: ANN001
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), _hash(hash_name))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(_hash(hash_name)))
    raise SigningError(f"unsupported key type {type(key).__name__} (Ed25519, ECDSA or RSA)")


def sign_envelope(payload: bytes, keys: list, hash_name: str = "sha256", *,
                  trailing_newline: bool = False) -> bytes:
    """The envelope signing ``payload`` with each private key, in order."""
    message = pae(PAYLOAD_TYPE, payload)
    sigs = [{"keyid": keyid(k.public_key()), "sig": base64.b64encode(_sign(k, message, hash_name)).decode()}
            for k in keys]
    env = {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(), "signatures": sigs}
    return json.dumps(env, separators=(",", ":")).encode() + (b"\n" if trailing_newline else b"")


def _envelope(blob: bytes) -> dict | None:
    try:
        env = json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return None
    return env if isinstance(env, dict) else None


def is_dsse(blob: bytes) -> bool:
    """Whether ``blob`` is JSON with the SIF metadata payload type (Go's isDSSESignature)."""
    env = _envelope(blob)
    return env is not None and env.get("payloadType") == PAYLOAD_TYPE


def _verifies(pub, sig: bytes, message: bytes, hash_name: str) -> bool:  # noqa: ANN001
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        if isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(sig, message)
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(sig, message, padding.PKCS1v15(), _hash(hash_name))
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(sig, message, ec.ECDSA(_hash(hash_name)))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def verify_envelope(blob: bytes, public_keys: list, hash_name: str = "sha256") -> tuple[bytes, list]:
    """(the payload, the keys that verified) of a DSSE envelope; IntegrityError with the
    SIF library's wording when no signature verifies with any of ``public_keys``."""
    env = _envelope(blob)
    fail = "dsse: verify envelope failed: "
    if env is None or env.get("payloadType") != PAYLOAD_TYPE:
        raise IntegrityError(fail + "unsupported payload type")
    try:
        payload = base64.b64decode(env.get("payload", ""), validate=True)
    except (ValueError, TypeError):
        raise IntegrityError(fail + "illegal base64 data in payload") from None
    sigs = env.get("signatures") or []
    if not sigs:
        raise IntegrityError(fail + "no signatures found")
    message = pae(PAYLOAD_TYPE, payload)
    accepted: list = []
    for pub in public_keys:
        kid = keyid(pub)
        for s in sigs:
            if not isinstance(s, dict) or (s.get("keyid") and s.get("keyid") != kid):
                continue
            try:
                raw = base64.b64decode(s.get("sig", ""), validate=True)
            except (ValueError, TypeError):
                continue
            if _verifies(pub, raw, message, hash_name):
                accepted.append(pub)
                break
    if not accepted:
        raise IntegrityError(fail + "Accepted signatures do not match threshold, Found: 0, Expected 1")
    return payload, accepted
