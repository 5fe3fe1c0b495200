"""SIF signing and verification, in Apptainer's formats byte for byte.

- ``metadata``: the signed integrity metadata (header, descriptor and object digests, JSON);
- ``dsse``: DSSE envelopes with PEM keys (``cryptography``); ``pgp``: clear-signatures and
  key handling through the real ``gpg``; ``keyring``: Apptainer's keyring files;
- ``sign``: appending Signature objects; ``verify``: the SIF library's verification rules;
- ``image``: raw SIF access for the above (streamed reads, signature appends);
- ``x509``: certificate chains for ``verify --certificate``;
- ``fingerprints``: the ``Fingerprints:`` check of SIF bases, verified pulls, the warning
  when a signed SIF is converted; ``report``: who signed an image (``inspect --signatures``).

Limits: no key server, no legacy (``SIFHASH``) signing (only verifying), no OCSP.
"""

from builder.signing.errors import IntegrityError, KeyringError, SigningError
from builder.signing.image import SignImage
from builder.signing.keyring import Keyring, VerifyKeys, keys_dir
from builder.signing.sign import DsseSigner, PgpSigner, sign_image
from builder.signing.verify import SignatureResult, tasks_for, verify_image

__all__ = ["IntegrityError", "KeyringError", "SigningError", "SignImage", "Keyring", "VerifyKeys", "keys_dir",
           "DsseSigner", "PgpSigner", "sign_image", "SignatureResult", "tasks_for",
           "verify_image"]
