"""Cache keys: what a stage's checkpoint depends on, as a flat record of named inputs.

A key is the sha256 of the canonical JSON of its inputs (``key_of``); the inputs are kept
in the index so that ``builder.cache.explain`` can say which one changed. Names say what
an input is, so that a diff reads well: ``base`` (the immutable identity of the base
image), ``header.from``, ``section %post``, ``file /abs/host/path``, ``build-arg NAME``,
``from-stage NAME``, ``parent`` (the previous checkpoint's key), ``identity`` (root,
rootless, fakeroot), ``sbuild`` (the version that runs the steps).

``base_identity(agent, header, ...)`` finds the immutable identity of a base without
fetching it: a registry manifest digest (one GET of the manifest), the sha256 of an image
file (SIF: of its partitions), a content hash of a sandbox directory, the ``Date`` of a
Debian mirror's Release file. It returns ``None`` with a reason for the agents whose base
has no identity known before the download (library, shub, docker-daemon): such a stage is
built every time (and says why).

``content_digest(path)`` hashes what ``cp -fLr`` would copy: names, types, permission
bits and bytes, symlinks followed (a loop is hashed as the link text), never owners or
times. Limits: what a ``%setup`` script reads on the host is not an input (only its text);
a ``%post`` that downloads is keyed by its text, not by what the network serves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from builder.images import file_digest

__all__ = ["key_of", "content_digest", "base_identity", "referenced_args", "Inputs"]

log = logging.getLogger("sbuild.cache")

Inputs = dict[str, str]
_ARG = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)\s*}}")
_CHUNK = 1 << 20


def key_of(inputs: Mapping[str, str]) -> str:
    """The key of ``inputs``: 64 hex digits (sha256 of their canonical JSON)."""
    text = json.dumps(dict(inputs), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def content_digest(path: str | os.PathLike, *, follow: bool = True) -> str:
    """``sha256:<hex>`` of a file or tree's names, types, permission bits and contents
    (symlinks followed when ``follow``, as ``cp -L`` does; their text otherwise)."""
    h = hashlib.sha256()
    _hash_entry(h, os.fsencode(path), b".", follow, set())
    return "sha256:" + h.hexdigest()


def _hash_entry(h, path: bytes, rel: bytes, follow: bool, seen: set) -> None:  # noqa: ANN001
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:  # a dangling link (cp fails on it too): its text
        st = os.lstat(path)
    kind = stat.S_IFMT(st.st_mode)
    h.update(b"%s\0%o\0" % (rel, st.st_mode))
    if kind == stat.S_IFLNK:
        h.update(os.readlink(path) + b"\0")
    elif kind == stat.S_IFREG:
        h.update(b"%d\0" % st.st_size)
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    elif kind == stat.S_IFDIR:
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
            h.update(b"loop\0")
            return
        seen = seen | {(st.st_dev, st.st_ino)}
        for name in sorted(os.listdir(path)):
            _hash_entry(h, os.path.join(path, name), rel + b"/" + name, follow, seen)
    else:
        h.update(b"%d\0" % st.st_rdev)


def referenced_args(text: str, values: Mapping[str, str]) -> Inputs:
    """``build-arg NAME`` → value for each ``{{ NAME }}`` in ``text`` (untemplated)."""
    return {f"build-arg {n}": values.get(n, "(default)") for n in sorted(set(_ARG.findall(text)))}


def base_identity(agent: str, header: Mapping[str, str], *, ref: str | None, cwd: str,
                  registry_digest=None) -> tuple[str | None, str]:  # noqa: ANN001
    """(identity or None, how it was found or why there is none) of a stage's base.
    ``ref``: the OCI reference the agent pulls (docker/oras/oci…); ``registry_digest(ref)``
    returns a registry image's manifest digest (one request)."""
    try:
        if agent in ("docker", "oras"):
            return registry_digest(ref), "registry manifest digest"
        if agent in ("docker-archive", "oci-archive", "oci"):
            return _local_oci(ref.split(":", 1)[1], cwd), "content of the archive or layout"
        if agent == "localimage":
            return _local_image(header["from"].removeprefix("localimage://"), cwd)
        if agent == "busybox":
            url = header.get("mirrorurl", "")
            if url.startswith("file://"):
                return file_digest(url[len("file://"):]), "content of the busybox binary"
            return url, "the busybox URL"
        if agent == "debootstrap":
            return _release_date(header["mirrorurl"], header["osversion"]), "the mirror's Release date"
        if agent == "scratch":
            return "scratch", "empty"
    except OSError as e:
        return None, f"cannot read the base: {e.strerror or e}"
    return None, f"a {agent} base has no identity known before it is downloaded"


def _local_oci(spec: str, cwd: str) -> str:
    path = Path(cwd, spec)
    if not path.exists() and ":" in spec:
        path = Path(cwd, spec.rsplit(":", 1)[0])
    if path.is_dir():
        return content_digest(path / "index.json") + " " + spec
    return file_digest(path) + " " + spec


def _local_image(spec: str, cwd: str) -> tuple[str, str]:
    path = Path(cwd, os.path.expanduser(spec))
    if path.is_dir():
        return content_digest(path, follow=False), "content of the sandbox"
    from builder.images.probe import probe

    info = probe(path)
    if info.kind == "sif":
        return _sif_partitions(path, info), "digests of the SIF partitions"
    return file_digest(path), "content of the image"


def _sif_partitions(path: Path, info) -> str:  # noqa: ANN001
    from builder.images import sif

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for d in info.descriptors:
            if d.data_type != sif.DATA_PARTITION:
                continue
            fh.seek(d.offset)
            left = d.size
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
    return "sha256:" + h.hexdigest()


def _release_date(mirror: str, suite: str) -> str:
    """``mirror suite Date`` of the mirror's Release file (its first few KiB)."""
    url = f"{mirror.rstrip('/')}/dists/{suite}/Release"
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - the recipe's own mirror
        head = resp.read(16384).decode("utf-8", "replace")
    date = next((line.split(":", 1)[1].strip() for line in head.splitlines() if line.startswith("Date:")), "")
    if not date:
        raise OSError(f"{url} has no Date field")
    return f"{mirror} {suite} {date}"
