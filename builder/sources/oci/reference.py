"""Image references with Docker's defaults (distribution/reference ``normalize.go``).

``parse_reference("ubuntu")`` is ``docker.io/library/ubuntu:latest``; a first component
with ``.`` or ``:`` or equal to ``localhost`` is a registry (``127.0.0.1:5000/x``); the
digest wins over a tag. ``from_header(from_, registry, namespace)`` joins a recipe's
``Registry:``/``Namespace:``/``From:`` as Apptainer does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from builder.sources.oci.errors import ReferenceError_

__all__ = ["Reference", "parse_reference", "from_header", "DOCKER_HUB"]

DOCKER_HUB = "docker.io"
_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[a-zA-Z0-9.-]+)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = "latest"
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host that serves the API (Docker Hub's is not ``docker.io``)."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def version(self) -> str:
        """What goes after ``/manifests/``: the digest if known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> "Reference":
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag and not self.digest:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, default_registry: str = DOCKER_HUB) -> Reference:
    """Parse ``[registry/]path[:tag][@digest]`` (a ``docker://`` prefix is accepted)."""
    raw = text
    for prefix in ("docker://", "oras://", "//"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    digest = None
    if "@" in text:
        text, digest = text.rsplit("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError_(f"invalid image reference {raw!r}: bad digest {digest!r}")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG.match(tag):
            raise ReferenceError_(f"invalid image reference {raw!r}: bad tag {tag!r}")
    registry, path = _split_domain(text, default_registry)
    if registry == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    if not path or not _PATH.match(path):
        hint = "repository names must be lowercase" if path.lower() != path else None
        raise ReferenceError_(f"invalid image reference {raw!r}: bad repository name {path!r}", hint=hint)
    if re.fullmatch(r"[a-f0-9]{64}", path):
        raise ReferenceError_(f"invalid image reference {raw!r}: a bare digest is not a name")
    if not _HOST.match(registry):
        raise ReferenceError_(f"invalid image reference {raw!r}: bad registry {registry!r}")
    return Reference(registry, path, tag if tag or digest else "latest", digest)


def _split_domain(text: str, default_registry: str) -> tuple[str, str]:
    first, sep, rest = text.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first or first.lower() != first):
        registry = first
    else:
        registry, rest = default_registry, text
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    return registry, rest


def from_header(from_: str, registry: str | None = None, namespace: str | None = None) -> str:
    """``[Registry/][Namespace/]From``, as Apptainer builds a ref from a recipe header."""
    ref = from_.strip()
    if namespace:
        ref = namespace.strip().strip("/") + "/" + ref
    if registry:
        ref = registry.strip().rstrip("/") + "/" + ref
    return ref
