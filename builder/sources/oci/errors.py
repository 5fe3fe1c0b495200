"""Exceptions of the OCI/registry sources, each a subclass of the project's error types.

Every message names what was being fetched (the blob digest, the registry) and never
contains credentials: ``redact`` strips ``user:pass@`` and token query values from
anything that came from the network before it reaches a message.
"""

from __future__ import annotations

import re

from base.errors import BuildError, ImageError, UsageError

__all__ = ["RegistryError", "AuthError", "DigestError", "ReferenceError_",
           "PlatformError", "LayerError", "redact"]

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_QS = re.compile(r"(?i)((?:token|access_token|refresh_token|password|secret|signature|"
                        r"x-amz-signature|x-amz-credential|sig)=)[^&\s\"']+")
_AUTH_HDR = re.compile(r"(?i)(authorization:\s*\w+\s+)\S+")


def redact(text: str) -> str:
    """``text`` with user-info in URLs, secret query values and auth headers replaced."""
    text = _USERINFO.sub("***@", text)
    text = _SECRET_QS.sub(r"\1***", text)
    return _AUTH_HDR.sub(r"\1***", text)


class RegistryError(BuildError):
    """Talking to a registry failed: HTTP errors, bad manifests, truncated blobs."""

    def __init__(self, message: str, *, registry: str | None = None, digest: str | None = None,
                 status: int | None = None, hint: str | None = None) -> None:
        super().__init__(redact(message), hint=hint)
        self.registry = registry
        self.digest = digest
        self.status = status


class AuthError(RegistryError):
    """The registry refused our (or no) credentials."""


class DigestError(RegistryError):
    """Content did not match the digest or size that named it."""


class ReferenceError_(UsageError):
    """An image reference that cannot be parsed (``docker://Bad//name``)."""


class PlatformError(ImageError):
    """No manifest in an index matches the wanted platform."""


class LayerError(ImageError):
    """A layer cannot be applied: corrupt tar, unsupported compression, a refused entry."""
