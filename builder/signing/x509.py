"""x509 certificates for ``verify --certificate``: the leaf's chain is checked as Go's
``x509.Certificate.Verify`` with the code-signing key usage does, then the leaf's public key
verifies DSSE signatures.

Chain: each certificate's issuer is found among the intermediates and roots by name and
checked with ``verify_directly_issued_by``; every certificate must be valid now, issuers
must be CAs, and a certificate carrying an extended key usage must allow code signing (or
any usage). The roots are ``--certificate-roots`` or the system bundle.

Limits: no name constraints or policy checks, no OCSP or CRL revocation.
"""

from __future__ import annotations

import datetime

from builder.signing.errors import SigningError

__all__ = ["certificate_key", "load_certificates"]

_SYSTEM_ROOTS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def load_certificates(path: str) -> list:
    from cryptography import x509

    try:
        with open(path, "rb") as fh:
            return x509.load_pem_x509_certificates(fh.read())
    except OSError as e:
        raise SigningError(f"Failed to load certificate: {path}: {e.strerror}") from None
    except ValueError:
        raise SigningError(f"Failed to load certificate: {path}: no PEM certificate in it") from None


def _check(cert, now: datetime.datetime, ca: bool) -> None:  # noqa: ANN001
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SigningError(f"x509: certificate has expired or is not yet valid: {cert.subject.rfc4514_string()}")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CODE_SIGNING not in eku \
            and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise SigningError("x509: certificate specifies an incompatible key usage")
    if ca:
        try:
            if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise SigningError(f"x509: {cert.subject.rfc4514_string()} is not a CA")
        except x509.ExtensionNotFound:
            raise SigningError(f"x509: {cert.subject.rfc4514_string()} is not a CA") from None


def certificate_key(path: str, intermediates: str | None = None, roots: str | None = None):  # noqa: ANN201
    """The leaf's public key once its chain verifies; SigningError saying why not."""
    leaf = load_certificates(path)[0]
    pool = load_certificates(intermediates) if intermediates else []
    if roots:
        anchors = load_certificates(roots)
    else:
        anchors = next((load_certificates(p) for p in _SYSTEM_ROOTS if _exists(p)), [])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, depth = leaf, 0
    _check(cert, now, ca=False)
    while depth < 10:
        for root in anchors:
            if root.subject == cert.issuer and _issued(cert, root):
                _check(root, now, ca=True)
                return leaf.public_key()
        issuer = next((c for c in pool if c.subject == cert.issuer and _issued(cert, c)), None)
        if issuer is None:
            raise SigningError("x509: certificate signed by unknown authority")
        _check(issuer, now, ca=True)
        cert, depth = issuer, depth + 1
    raise SigningError("x509: certificate chain too long")


def _issued(cert, issuer) -> bool:  # noqa: ANN001
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - InvalidSignature and friends
        return False
    return True


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)
