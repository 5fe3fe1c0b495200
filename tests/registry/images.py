"""Test images built in memory: layer tars, OCI layouts, docker-save archives.

Everything is deterministic (fixed mtimes, gzip without timestamps) so digests are stable.
``standard_layers()`` is the image the registry tests push: three layers with a whiteout,
an opaque directory, hardlinks (also into a lower layer), symlinks (absolute and
relative), setuid, a FIFO, a char device and an xattr.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MTIME = 1_600_000_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _info(name, kind, mode, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.mtime = kw.pop("mtime", MTIME)
    ti.uid = kw.pop("uid", 0)
    ti.gid = kw.pop("gid", 0)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def f(name, data=b"", mode=0o644, **kw):
    data = data.encode() if isinstance(data, str) else data
    return (_info(name, tarfile.REGTYPE, mode, size=len(data), **kw), data)


def d(name, mode=0o755, **kw):
    return (_info(name, tarfile.DIRTYPE, mode, **kw), None)


def sym(name, target, **kw):
    return (_info(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw), None)


def hard(name, target, **kw):
    return (_info(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw), None)


def chardev(name, major, minor, mode=0o666, **kw):
    return (_info(name, tarfile.CHRTYPE, mode, devmajor=major, devminor=minor, **kw), None)


def fifo(name, mode=0o644, **kw):
    return (_info(name, tarfile.FIFOTYPE, mode, **kw), None)


def wh(path):
    head, _, base = path.rpartition("/")
    return f((head + "/" if head else "") + ".wh." + base)


def opaque(directory):
    return f(directory.rstrip("/") + "/.wh..wh..opq")


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    layers: list[bytes]                 # uncompressed tars
    config: dict = field(default_factory=dict)
    arch: str = "amd64"
    variant: str | None = None
    compress: str = "gzip"

    def blobs(self):
        """(manifest bytes, config bytes, [(layer blob, media type)])"""
        layer_blobs = []
        for tar in self.layers:
            if self.compress == "gzip":
                layer_blobs.append((gz(tar), OCI_LAYER_GZIP))
            elif self.compress == "zstd":
                import zstandard
                layer_blobs.append((zstandard.ZstdCompressor().compress(tar),
                                    "application/vnd.oci.image.layer.v1.tar+zstd"))
            else:
                layer_blobs.append((tar, OCI_LAYER))
        cfg = {"created": "2020-09-13T12:26:40Z", "architecture": self.arch, "os": "linux",
               "config": self.config, "rootfs": {"type": "layers",
                                                 "diff_ids": [sha(t) for t in self.layers]}}
        if self.variant:
            cfg["variant"] = self.variant
        cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, "digest": sha(cfg_bytes), "size": len(cfg_bytes)},
                    "layers": [{"mediaType": mt, "digest": sha(b), "size": len(b)} for b, mt in layer_blobs]}
        return json.dumps(manifest, sort_keys=True).encode(), cfg_bytes, layer_blobs


def _put(layout: Path, data: bytes) -> dict:
    path = layout / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": sha(data), "size": len(data)}


def write_layout(layout: Path, tagged: dict[str, Image | list[Image]]) -> Path:
    """An OCI layout holding each tag: one image, or a list of images as an index."""
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entries = []
    for tag, item in tagged.items():
        images = item if isinstance(item, list) else [item]
        descs = []
        for img in images:
            manifest, cfg, layers = img.blobs()
            _put(layout, cfg)
            for blob, _ in layers:
                _put(layout, blob)
            desc = {"mediaType": OCI_MANIFEST, **_put(layout, manifest)}
            plat = {"architecture": img.arch, "os": "linux"}
            if img.variant:
                plat["variant"] = img.variant
            descs.append({**desc, "platform": plat})
        if isinstance(item, list):
            index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs},
                               sort_keys=True).encode()
            top = {"mediaType": OCI_INDEX, **_put(layout, index)}
        else:
            top = {k: v for k, v in descs[0].items() if k != "platform"}
        top["annotations"] = {"org.opencontainers.image.ref.name": tag}
        entries.append(top)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": entries}))
    return layout


def docker_save_tar(path: Path, img: Image, repo_tag: str) -> Path:
    """A classic ``docker save`` archive (uncompressed layers in ``<id>/layer.tar``)."""
    _, cfg, _ = img.blobs()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    members = [(cfg_name, cfg)]
    layer_paths = []
    for i, tar in enumerate(img.layers):
        lid = hashlib.sha256(tar + bytes([i])).hexdigest()
        members += [(f"{lid}/layer.tar", tar), (f"{lid}/VERSION", b"1.0"), (f"{lid}/json", b"{}")]
        layer_paths.append(f"{lid}/layer.tar")
    manifest = [{"Config": cfg_name, "RepoTags": [repo_tag], "Layers": layer_paths}]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    with tarfile.open(path, "w") as out:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = MTIME
            out.addfile(ti, io.BytesIO(data))
    return path


def standard_layers(root_owned: bool = True) -> list[bytes]:
    """The three layers of the registry test image (see the module docstring)."""

    l1 = tar_bytes([
        d("bin"), f("bin/busybox", b"\x7fELF fake busybox\n" * 100, 0o755),
        sym("bin/sh", "busybox"), sym("bin/ls", "/bin/busybox"),
        d("etc"), f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"),
        f("etc/removeme", "gone soon"), f("etc/hosts", "127.0.0.1 image-host\n"),
        d("opt"), d("opt/old"), f("opt/old/a", "a"), f("opt/old/b", "b"),
        d("opt/old/sub"), f("opt/old/sub/deep", "deep"),
        d("home"), d("home/user", 0o750, uid=1000, gid=1000),
        f("home/user/.profile", "export X=1\n", 0o640, uid=1000, gid=1000),
        f("usr/bin/su", b"setuid binary", 0o4755), f("usr/bin/sgid", b"setgid", 0o2711, gid=42),
        d("tmp", 0o1777), f("data/original", "shared by hardlinks"),
        d("secret", 0o700), f("secret/key", "k", 0o400),
        d("locked", 0o000), f("locked/inside", "x", 0o600),
        d("dev"), chardev("dev/null", 1, 3), fifo("run.fifo", 0o600),

    ])
    l2 = tar_bytes([
        opaque("opt/old"), f("opt/old/c", "c from layer 2"),
        f("etc/hostname", "layer2"), f("data/replaced", "first version"),
        f("locked/more", "y", 0o644),
    ])
    l3 = tar_bytes([
        wh("etc/removeme"), f("hello.txt", "hello from layer 3\n"),
        hard("hello-link.txt", "hello.txt"), hard("data/lower-link", "data/original"),
        f("data/replaced", "second version", 0o600), d("etc", 0o755),
        _xattr(f("etc/with-xattr", "x"), {"user.test": "value"}),
        sym("etc/alt", "../opt/old/c"), wh("opt/old/c"),  # whiteout after same-layer? no: lower
    ])
    return [l1, l2, l3]


def _xattr(entry, attrs: dict[str, str]):
    ti, data = entry
    ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in attrs.items()}
    return (ti, data)


def standard_config() -> dict:
    return {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "FOO=bar baz", "QUOTE=a\"b$c"],
            "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hello"], "WorkingDir": "/data",
            "Labels": {"org.example.name": "test image", "maintainer": "<nobody@example.com>"}}


def file_tree(root: Path) -> dict[str, tuple]:
    """(type, mode, uid, gid, content-or-target, link group, xattrs) for every path below ``root``."""
    import stat
    tree = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                kind, body = "f", Path(p).read_bytes()
                if st.st_nlink > 1:
                    inodes.setdefault((st.st_dev, st.st_ino), rel)
            elif stat.S_ISDIR(st.st_mode):
                kind, body = "d", None
            elif stat.S_ISLNK(st.st_mode):
                kind, body = "l", os.readlink(p)
            elif stat.S_ISCHR(st.st_mode):
                kind, body = "c", (os.major(st.st_rdev), os.minor(st.st_rdev))
            elif stat.S_ISFIFO(st.st_mode):
                kind, body = "p", None
            else:
                kind, body = "?", None
            tree[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body,
                         (st.st_dev, st.st_ino) if kind == "f" and st.st_nlink > 1 else None,
                         _xattrs(p))
    # replace inode numbers by the first path of the group, so two trees compare
    groups: dict = {}
    for rel in sorted(tree):
        key = tree[rel][5]
        if key is not None:
            groups.setdefault(key, rel)
    return {rel: v[:5] + (groups.get(v[5]) if v[5] else None, v[6]) for rel, v in tree.items()}


def _xattrs(path: str) -> tuple:
    """(name, value) of every xattr on ``path`` (not followed), sorted."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))
