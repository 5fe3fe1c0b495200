"""Small HTTP servers on 127.0.0.1 that follow the Sylabs library API, an OCI registry in front
of it, Singularity Hub's API and an object store (registry-protocols.md §3, §4).

- ``ObjectStore``: serves blobs at ``/objects/<key>`` with ``Range`` (206) support, like the
  presigned S3/GCS URLs the real services redirect to. It records each request's headers,
  so tests can check that no token reached it. A blob may be marked ``truncate``: the
  server then announces the full length and sends only half; one in ``no_range`` is
  served whole whatever ``Range`` asks (as some servers do).
- ``Library``: ``/version``, ``/v1/images/<path>:<tag>?arch=``, ``/v1/imagefile/...`` (303 or
  302 to the object store, or 200 with the body), ``/v1/containers/<path>``,
  ``/v1/oci-redirect``, ``/assets/config/config.prod.json``; every JSON answer in the
  ``{"data": …, "error": …}`` envelope; short names mapped as the real library maps them
  (``alpine`` → ``library/default/alpine``, ``default/alpine`` → ``library/default/alpine``);
  private images need ``Authorization: Bearer <TOKEN>``.
- ``Registry``: the library's OCI side, ``/v2/<name>/manifests/<ref>`` (an index by
  architecture, then a manifest with the SIF as its single layer and the SIF config) and
  ``/v2/<name>/blobs/<digest>`` (Range), needing its own bearer token.
- ``Shub``: ``/api/container/<user>/<name>:<tag>[@version]`` answering the JSON Singularity
  Hub gave (``image`` URL on the object store, ``version`` = md5, ``commit``, ``size_mb``).

Each server runs in a thread of the test process (``ThreadingHTTPServer``) and is stopped
by the fixture that started it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LIB_TOKEN = "lib-token-7f3a9c51e2"
REG_TOKEN = "reg-token-b81d02c4aa"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.app.seen.append((self.path, dict(self.headers)))
        try:
            self.server.app.handle(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send(self, status: int, body: bytes = b"", headers: dict | None = None, length: int | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        if length is not None and length != len(body):
            self.close_connection = True

    def json(self, status: int, doc) -> None:
        self.send(status, json.dumps(doc).encode(), {"Content-Type": "application/json"})


class _App:
    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.seen: list[tuple[str, dict]] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.scheme = "https" if tls else "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._server.app = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def requests_to(self, prefix: str) -> list[tuple[str, dict]]:
        return [(p, h) for p, h in self.seen if p.startswith(prefix)]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
    if not m:
        return None
    start = int(m[1])
    end = min(int(m[2]) if m[2] else size - 1, size - 1)
    return start, end


def _serve_bytes(h: _Handler, data: bytes, truncate: bool = False, content_type: str = "application/octet-stream",
                 ranges: bool = True):
    rng = _range(h.headers.get("Range"), len(data)) if ranges else None
    status, body = 200, data
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    if rng:
        status, body = 206, data[rng[0]:rng[1] + 1]
        headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{len(data)}"
    if truncate:
        h.send(status, body[:len(body) // 2], headers, length=len(body))
    else:
        h.send(status, body, headers)


class ObjectStore(_App):
    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.no_range: set[str] = set()  # keys served whole whatever Range says

    def put(self, key: str, data: bytes) -> str:
        self.blobs[key] = data
        return f"{self.url}/objects/{key}?X-Amz-Signature=sig-{key}"

    def handle(self, h: _Handler) -> None:
        key = urlsplit(h.path).path.removeprefix("/objects/")
        if key not in self.blobs:
            h.send(404, b"NoSuchKey")
            return
        _serve_bytes(h, self.blobs[key], truncate=key in self.truncate, ranges=key not in self.no_range)


@dataclass
class LibImage:
    """One image of the fake library. ``hash`` may be made wrong on purpose."""

    id: str
    data: bytes
    arch: str = "amd64"
    private: bool = False
    mode: str = "303"            # 303 | 302 | direct | 500
    hash: str = ""
    size: int | None = None

    def __post_init__(self) -> None:
        self.hash = self.hash or "sha256." + hashlib.sha256(self.data).hexdigest()
        self.size = len(self.data) if self.size is None else self.size


@dataclass
class Container:
    arch_tags: dict[str, dict[str, str]] = field(default_factory=dict)  # arch -> tag -> image id


def full_path(path: str) -> str:
    parts = path.strip("/").split("/")
    return "/".join((["library", "default"] if len(parts) == 1 else ["library"] if len(parts) == 2 else []) + parts)


class Library(_App):
    """See the module docstring. ``api_version=None`` makes ``/version`` a 404."""

    def __init__(self, store: ObjectStore, api_version: str | None = "2.0.0-alpha.2",
                 tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(tls)
        self.store, self.api_version = store, api_version
        self.images: dict[str, LibImage] = {}
        self.containers: dict[str, Container] = {}
        self.registry: Registry | None = None

    def add(self, path: str, tag: str, image: LibImage) -> LibImage:
        self.images[image.id] = image
        self.containers.setdefault(full_path(path), Container()).arch_tags.setdefault(image.arch, {})[tag] = image.id
        self.store.put(image.id, image.data)
        return image

    def _authorized(self, h: _Handler) -> bool:
        return h.headers.get("Authorization") == f"Bearer {LIB_TOKEN}"

    def _find(self, ref: str, arch: str | None) -> LibImage | None:
        path, _, tag = ref.partition(":")
        cont = self.containers.get(full_path(path))
        if cont is None:
            return None
        if tag.startswith("sha256."):
            return next((i for i in self.images.values() if i.hash == tag), None)
        tags = cont.arch_tags.get(arch or "amd64", {})
        return self.images.get(tags.get(tag or "latest", ""))

    def _error(self, h: _Handler, status: int, message: str) -> None:
        h.json(status, {"data": None, "error": {"code": status, "message": message}})

    def handle(self, h: _Handler) -> None:
        url = urlsplit(h.path)
        path, query = unquote(url.path), parse_qs(url.query)
        arch = (query.get("arch") or [None])[0]
        if path == "/version":
            if self.api_version is None:
                return self._error(h, 404, "not found")
            return h.json(200, {"data": {"version": "test", "apiVersion": self.api_version}})
        if path == "/assets/config/config.prod.json":
            return h.json(200, {"libraryAPI": {"uri": self.url}, "keystoreAPI": {"uri": self.url}})
        if path == "/v1/oci-redirect":
            if self.registry is None:
                return self._error(h, 404, "oci not supported")
            name = full_path((query.get("namespace") or [""])[0])
            return h.json(200, {"token": REG_TOKEN, "url": self.registry.url, "name": name})
        if path.startswith("/v1/containers/"):
            cont = self.containers.get(full_path(path.removeprefix("/v1/containers/")))
            if cont is None:
                return self._error(h, 404, "container not found")
            legacy = {t: i for tags in cont.arch_tags.values() for t, i in tags.items()}
            return h.json(200, {"data": {"name": path.rsplit("/", 1)[-1], "archTags": cont.arch_tags,
                                         "imageTags": legacy}})
        for prefix in ("/v1/images/", "/v1/imagefile/"):
            if path.startswith(prefix):
                image = self._find(path.removeprefix(prefix), arch)
                if image is None:
                    return self._error(h, 404, "image not found")
                if image.private and not self._authorized(h):
                    return self._error(h, 401, "authentication required")
                if prefix == "/v1/images/":
                    return h.json(200, {"data": {"id": image.id, "hash": image.hash, "size": image.size,
                                                 "arch": image.arch, "signed": False, "tags": [],
                                                 "containerName": path.rsplit("/", 1)[-1].split(":")[0]}})
                return self._imagefile(h, image)
        self._error(h, 404, "no such endpoint")

    def _imagefile(self, h: _Handler, image: LibImage) -> None:
        if image.mode == "500":
            return self._error(h, 500, "internal server error")
        if image.mode == "direct":
            return _serve_bytes(h, image.data, truncate=image.id in self.store.truncate)
        location = self.store.put(image.id, image.data)
        h.send(303 if image.mode == "303" else 302, b"", {"Location": location})


class Registry(_App):
    """The library's OCI registry: SIF images as an index of one manifest per architecture."""

    def __init__(self) -> None:
        super().__init__()
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}  # (name, ref) -> (media, body)
        self.blobs: dict[str, bytes] = {}

    def _blob(self, data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    def add(self, name: str, tag: str, sif: bytes, arch: str = "amd64") -> None:
        layer = self._blob(sif)
        config = self._blob(json.dumps({"architecture": arch, "os": "linux", "rootfs": layer["digest"],
                                        "description": "", "signed": False, "encrypted": False}).encode())
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.sylabs.sif.config.v1+json", **config},
                               "layers": [{"mediaType": "application/vnd.sylabs.sif.layer.v1.sif", **layer}]}).encode()
        mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.manifests[(name, mdigest)] = ("application/vnd.oci.image.manifest.v1+json", manifest)
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                           "digest": mdigest, "size": len(manifest),
                                           "platform": {"architecture": arch, "os": "linux"}}]}).encode()
        self.manifests[(name, tag)] = ("application/vnd.oci.image.index.v1+json", index)

    def handle(self, h: _Handler) -> None:
        if h.headers.get("Authorization") != f"Bearer {REG_TOKEN}":
            return h.json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "token required"}]})
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", urlsplit(h.path).path)
        if not m:
            return h.send(404)
        if m[2] == "blobs":
            data = self.blobs.get(m[3])
            return _serve_bytes(h, data) if data is not None else h.send(404)
        media, body = self.manifests.get((m[1], m[3]), (None, b""))
        if media is None or media not in (h.headers.get("Accept") or ""):
            return h.json(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})
        h.send(200, body, {"Content-Type": media,
                           "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()})


@dataclass
class ShubImage:
    data: bytes
    version: str = ""
    ready: bool = True
    url: str | None = None  # the image URL to announce instead of the object store's

    def __post_init__(self) -> None:
        self.version = self.version or hashlib.md5(self.data).hexdigest()


class Shub(_App):
    """Singularity Hub's ``/api/container/`` answering with the archived JSON shape."""

    def __init__(self, store: ObjectStore) -> None:
        super().__init__()
        self.store = store
        self.containers: dict[str, ShubImage] = {}  # "user/name:tag" -> image

    def add(self, name: str, tag: str, image: ShubImage) -> ShubImage:
        self.containers[f"{name}:{tag}"] = image
        self.store.put(f"shub-{image.version}.simg", image.data)
        return image

    def handle(self, h: _Handler) -> None:
        path = unquote(urlsplit(h.path).path)
        if not path.startswith("/api/container/"):
            return h.send(404, b"not found")
        ref = path.removeprefix("/api/container/")
        name_tag, _, digest = ref.partition("@")
        if ":" not in name_tag:
            name_tag += ":latest"
        image = self.containers.get(name_tag)
        if image is None or (digest and digest != image.version):
            return h.json(404, {"detail": "Not found."})
        name, tag = name_tag.split(":", 1)
        url = (image.url or self.store.put(f"shub-{image.version}.simg", image.data)) if image.ready else None
        h.json(200, {"id": 23, "name": name, "tag": tag, "branch": "master", "commit": "e279432e" + "0" * 32,
                     "version": image.version, "size_mb": str(max(1, len(image.data) >> 20)), "image": url})


def make_cert(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (``openssl``): (cert, key)."""
    workdir.mkdir(parents=True, exist_ok=True)
    crt, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


def cache_files(cache: Path) -> list[str]:
    """Everything in the blob cache's blobs/ and tmp/ (empty after a failed pull)."""
    return sorted(str(p.relative_to(cache)) for sub in ("blobs", "tmp") if (cache / sub).is_dir()
                  for p in (cache / sub).rglob("*") if p.is_file())
