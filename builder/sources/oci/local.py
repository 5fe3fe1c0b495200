"""Local image sources: ``oci:``, ``oci-archive:``, ``docker-archive:``, ``docker-daemon:``.

- ``oci:DIR[:tag|@digest]``: an OCI image layout. With one entry in ``index.json`` it is
  used; otherwise a tag (``org.opencontainers.image.ref.name``) or digest must choose.
  Indexes are resolved by platform. Blobs are verified (size, digest) while read.
- ``oci-archive:FILE[:tag]``: a tar (or tar.gz) of such a layout, unpacked to a temp dir
  (member names are checked; nothing outside the temp dir is written).
- ``docker-archive:FILE[:name:tag]``: ``docker save``/``podman save`` output; a tar with
  ``oci-layout`` + ``index.json`` (Docker 25+) is read as an OCI layout, otherwise
  ``manifest.json`` chooses the config and the layer files (uncompressed or gzip;
  verified against the config's ``diff_ids``).
- ``docker-daemon:IMAGE``: the docker SDK's ``images.get(IMAGE).save(named=IMAGE)`` is
  streamed to a temp file (never into memory), then read as a docker-archive.
  ``DOCKER_HOST`` (or ``PullOptions.docker_host``) selects the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from base.errors import CapabilityError, ImageError
from base.gojson import unmarshal
from base.owner import owned_temp_dir
from builder.sources.oci.config import ImageConfig
from builder.sources.oci.errors import DigestError
from builder.sources.oci.puller import (PullOptions, Progress, Resolved, _image_config, _json,
                                       _tar_layers, apply_layers)
from builder.sources.oci.platform import select_manifest
from builder.sources.oci.stream import CHUNK, HashingReader, parse_digest

__all__ = ["TRANSPORTS", "fetch_local", "OciLayout"]

log = logging.getLogger("sbuild.sources.oci")
TRANSPORTS = ("oci", "oci-archive", "docker-archive", "docker-daemon")
_INDEX = ("application/vnd.oci.image.index.v1+json",
          "application/vnd.docker.distribution.manifest.list.v2+json")
_REF_NAME = "org.opencontainers.image.ref.name"


def fetch_local(transport: str, spec: str, rootfs: Path, options: PullOptions,
                progress: Progress | None = None) -> ImageConfig:
    with owned_temp_dir(options.tmpdir, "sbuild-oci-") as tmp:  # (reclaimed if we are killed)
        if transport == "oci":
            path, selector = _split_spec(spec)
            return _from_layout(OciLayout(Path(path)), selector, rootfs, options, f"oci:{spec}")
        if transport == "oci-archive":
            path, selector = _split_spec(spec)
            layout = _unpack_archive(Path(path), Path(tmp))
            return _from_layout(OciLayout(layout), selector, rootfs, options, f"oci-archive:{spec}")
        if transport == "docker-archive":
            path, _, name = spec.partition(":")
            return _from_docker_archive(Path(path), name or None, Path(tmp), rootfs, options)
        archive = _save_from_daemon(spec, Path(tmp) / "image.tar", options)
        return _from_docker_archive(archive, spec, Path(tmp), rootfs, options)


def _split_spec(spec: str) -> tuple[str, str | None]:
    if "@" in spec:
        path, digest = spec.rsplit("@", 1)
        return path, "@" + digest
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, tag = spec.rsplit(":", 1)
    return path, tag


class OciLayout:
    """Read access to an OCI image layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        if not (root / "index.json").is_file():
            raise ImageError(f"reading OCI layout {root}: no index.json", path=str(root))

    def blob_path(self, digest: str) -> Path:
        algo, hexpart = parse_digest(digest)
        path = self.root / "blobs" / algo / hexpart
        if not path.is_file():
            raise ImageError(f"reading OCI layout {self.root}: blob {digest} is missing", path=str(path))
        return path

    def read_blob(self, desc: dict) -> bytes:
        with self.open_blob(desc) as fh:
            return b"".join(iter(lambda: fh.read(CHUNK), b""))

    @contextlib.contextmanager
    def open_blob(self, desc: dict) -> Iterator[BinaryIO]:
        with open(self.blob_path(desc["digest"]), "rb") as fh:
            yield _Verifying(fh, desc["digest"], desc.get("size"))  # type: ignore[misc]

    def resolve(self, selector: str | None, options: PullOptions, what: str) -> Resolved:
        index = _json((self.root / "index.json").read_bytes(), f"{what} index.json")
        entries = index.get("manifests") or []
        if selector and selector.startswith("@"):
            chosen = [e for e in entries if e.get("digest") == selector[1:]]
            desc = chosen[0] if chosen else {"digest": selector[1:], "mediaType": ""}
        elif selector:
            chosen = [e for e in entries if (e.get("annotations") or {}).get(_REF_NAME) == selector]
            if not chosen:
                raise ImageError(f"reading {what}: no image tagged {selector!r}",
                                 hint=f"tags: {', '.join(_tags(entries)) or 'none'}")
            desc = chosen[0]
        elif len(entries) == 1:
            desc = entries[0]
        else:
            raise ImageError(f"reading {what}: the layout holds {len(entries)} images; name one",
                             hint=f"add :TAG or @DIGEST (tags: {', '.join(_tags(entries)) or 'none'})")
        want = options.want()
        for _ in range(4):
            doc = _json(self.read_blob(desc), f"{what} manifest")
            if desc.get("mediaType") in _INDEX or doc.get("mediaType") in _INDEX or "manifests" in doc:
                desc = select_manifest(doc.get("manifests") or [], want)
                continue
            break
        config = self.read_blob(doc["config"])
        return Resolved(doc, config, desc["digest"], None, None, want)


def _tags(entries: list[dict]) -> list[str]:
    return [t for e in entries if (t := (e.get("annotations") or {}).get(_REF_NAME))]


def _from_layout(layout: OciLayout, selector: str | None, rootfs: Path, options: PullOptions,
                 what: str) -> ImageConfig:
    resolved = layout.resolve(selector, options, what)
    resolved.tag = selector if selector and not selector.startswith("@") else None
    resolved.name = what
    tar_layers = [d for _, d in _tar_layers(resolved.manifest)]
    apply_layers(resolved, rootfs, options, lambda i: layout.open_blob(tar_layers[i]))
    return _image_config(resolved)


class _Verifying:
    """A reader that raises ``DigestError`` at end-of-file if size or digest differ."""

    def __init__(self, fh: BinaryIO, digest: str, size: int | None) -> None:
        algo, _ = parse_digest(digest)
        self._r = HashingReader(fh, algo)
        self._digest, self._size = digest, size

    def read(self, size: int = -1) -> bytes:
        data = self._r.read(size)
        if not data:
            if self._size is not None and self._r.count != self._size:
                raise DigestError(f"blob {self._digest}: {self._r.count} bytes, expected {self._size}",
                                  digest=self._digest)
            if self._r.digest() != self._digest:
                raise DigestError(f"blob {self._digest}: content has digest {self._r.digest()}",
                                  digest=self._digest)
        return data

    def readable(self) -> bool:
        return True


def _safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for m in tar:
        name = posixpath.normpath(m.name).lstrip("/")
        if name.startswith("..") or not (m.isreg() or m.isdir()):
            continue
        if name in ("oci-layout", "index.json", "manifest.json", "repositories") or name.startswith("blobs/"):
            m.name = name
            yield m


def _unpack_archive(path: Path, dest: Path) -> Path:
    """Extract the layout files of an OCI archive (plain or gzip) into ``dest``."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in _safe_members(tar):
                target = dest / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, CHUNK)
    except (OSError, tarfile.TarError) as e:
        raise ImageError(f"reading archive {path}: {e}", path=str(path)) from e
    return dest


def _from_docker_archive(path: Path, name: str | None, tmp: Path, rootfs: Path,
                         options: PullOptions) -> ImageConfig:
    try:
        with tarfile.open(path, "r:*") as tar:
            names = set(_index(tar))
    except (OSError, tarfile.TarError) as e:
        raise ImageError(f"reading docker archive {path}: {e}", path=str(path)) from e
    if {"oci-layout", "index.json"} <= names and not _inconsistent_index(path, names):
        layout = OciLayout(_unpack_archive(path, tmp / "layout"))
        return _from_layout(layout, None, rootfs, options, f"docker-archive:{path}")
    if "manifest.json" not in names:
        raise ImageError(f"reading docker archive {path}: no manifest.json", path=str(path))
    with tarfile.open(path, "r:*") as tar:
        try:
            manifest = unmarshal(_member_bytes(tar, "manifest.json"))
        except ValueError as e:
            raise ImageError(f"reading docker archive {path}: manifest.json: {e}", path=str(path)) from e
        entry = _choose(manifest, name, path)
        config = _member_bytes(tar, entry["Config"])
        doc = {"layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                           "digest": f"file:{p}"} for p in entry["Layers"]]}
        tag = (entry.get("RepoTags") or [None])[0]
        resolved = Resolved(doc, config, None, tag, f"docker-archive:{path}", options.want())

        @contextlib.contextmanager
        def open_layer(i: int):
            member = _resolve_member(tar, entry["Layers"][i])
            with tar.extractfile(member) as fh:  # type: ignore[union-attr]
                yield fh

        apply_layers(resolved, rootfs, options, open_layer)
    return _image_config(resolved)


def _index(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Members by normalized name (``./manifest.json`` and ``manifest.json`` alike)."""
    cached = getattr(tar, "_sbuild_index", None)
    if cached is None:
        cached = {posixpath.normpath(m.name).lstrip("/"): m for m in tar.getmembers()}
        tar._sbuild_index = cached  # type: ignore[attr-defined]
    return cached


def _inconsistent_index(path: Path, names: set[str]) -> bool:
    """Docker 25 sometimes writes ``"manifests": null``; then manifest.json is the truth."""
    if "manifest.json" not in names:
        return False
    with tarfile.open(path, "r:*") as tar:
        try:
            return not (unmarshal(_member_bytes(tar, "index.json")).get("manifests"))
        except ValueError:
            return True


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    with tar.extractfile(_resolve_member(tar, name)) as fh:  # type: ignore[union-attr]
        return fh.read()


def _resolve_member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """The member ``name``, following podman's symlinked ``<id>/layer.tar`` entries."""
    for _ in range(8):
        member = _index(tar).get(posixpath.normpath(name).lstrip("/"))
        if member is None:
            raise ImageError(f"reading docker archive: {name} is missing")
        if not member.issym():
            return member
        name = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
    raise ImageError(f"reading docker archive: {name} is a symlink loop")


def _choose(manifest: list[dict], name: str | None, path: Path) -> dict:
    if name:
        wanted = {name, f"{name}:latest", name.removeprefix("docker.io/"),
                  name.removeprefix("docker.io/library/"), f"localhost/{name}"}
        for entry in manifest:
            if wanted & set(entry.get("RepoTags") or []):
                return entry
        if len(manifest) == 1:
            return manifest[0]  # saved by ID: no tag recorded
        raise ImageError(f"reading docker archive {path}: no image named {name!r}")
    if len(manifest) != 1:
        raise ImageError(f"reading docker archive {path}: it holds {len(manifest)} images; name one",
                         hint="docker-archive:FILE:NAME:TAG")
    return manifest[0]


def _save_from_daemon(name: str, dest: Path, options: PullOptions) -> Path:
    try:
        import docker
        from docker.errors import DockerException, ImageNotFound
    except ImportError as e:
        raise CapabilityError("docker-daemon: needs the docker Python package",
                              hint="pip install docker") from e
    env = dict(options.env())
    if options.docker_host:
        env["DOCKER_HOST"] = options.docker_host
    try:
        client = docker.from_env(environment=env)
        image = client.images.get(name)
        tags = image.tags or []
        named = name if name in tags else (tags[0] if tags else False)
        with open(dest, "wb") as out:
            for chunk in image.save(chunk_size=CHUNK, named=named):
                out.write(chunk)
    except ImageNotFound as e:
        raise ImageError(f"docker-daemon:{name}: no such image in the daemon") from e
    except DockerException as e:
        raise CapabilityError(f"docker-daemon:{name}: cannot talk to the docker daemon: {e}",
                              hint="start dockerd or set DOCKER_HOST") from e
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return dest

