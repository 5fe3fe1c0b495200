"""The errors of signing and verification.

``IntegrityError`` carries the SIF library's wording (``str(e)`` is what follows
``integrity: `` in Apptainer's messages) and, where a covered byte changed, ``changed``:
``"header"``, ``"descriptor N"`` or ``"object N"``; ``object_id`` names an object whose data
did not match. ``SigningError`` is a failure to produce a signature (no key, wrong
passphrase, gpg failed); its message never contains key material or a passphrase.
"""

from __future__ import annotations

from base.errors import SbuildError

__all__ = ["IntegrityError", "SigningError", "KeyringError"]


class IntegrityError(SbuildError):
    """A signature that is missing, unreadable or does not match the image."""

    exit_status = 1

    def __init__(self, message: str, *, changed: str | None = None, object_id: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.changed, self.object_id = changed, object_id


class SigningError(SbuildError):
    """A signature could not be made."""

    exit_status = 1


class KeyringError(SbuildError):
    """The local keyring cannot be read or changed as asked."""

    exit_status = 1
