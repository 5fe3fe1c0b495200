"""The layer applier: same result as umoci, and hostile archives cannot touch the host."""

from __future__ import annotations

import copy
import io
import os
import shutil
import subprocess

import images as I
import pytest

from builder.sources.oci import LayerApplier
from builder.sources.oci.errors import LayerError
from builder.sources.oci.stream import decompressed


def apply(root, *layers, rootless=False, threaded=None):
    applier = LayerApplier(root, rootless=rootless, threaded=threaded)
    for layer in layers:
        applier.apply(decompressed(io.BytesIO(I.gz(layer))))
    applier.finish()
    return root


def snapshot(path):
    """Every path below ``path`` with its type, mode and content: to prove it is untouched."""
    return I.file_tree(path)


@pytest.mark.parametrize("threaded", [None, True], ids=["adaptive", "threads"])
@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_standard_image_matches_umoci_unpack(tmp_path, rootless, threaded):
    if shutil.which("umoci") is None:
        pytest.skip("needs umoci (apt-get install umoci)")
    if not rootless and os.geteuid() != 0:
        pytest.skip("root comparison needs root (chown, mknod)")
    img = I.Image(I.standard_layers(), I.standard_config())
    I.write_layout(tmp_path / "layout", {"1.0": img})
    cmd = ["umoci", "unpack", *(["--rootless"] if rootless else []), "--image",
           f"{tmp_path}/layout:1.0", str(tmp_path / "bundle")]
    subprocess.run(cmd, check=True, capture_output=True)
    ours = apply(tmp_path / "ours", *img.layers, rootless=rootless, threaded=threaded)
    theirs = I.file_tree(tmp_path / "bundle" / "rootfs")
    assert I.file_tree(ours) == theirs  # incl. xattrs: user.rootlesscontainers when rootless
    # the rules that matter to users, spelled out
    assert "etc/removeme" not in theirs and sorted(os.listdir(ours / "opt/old")) == []
    assert theirs["hello-link.txt"][5] == theirs["hello.txt"][5] == "hello-link.txt"
    assert theirs["usr/bin/su"][1] == 0o4755
    assert os.getxattr(ours / "etc/with-xattr", "user.test") == b"value"
    owner = dict(theirs["home/user/.profile"][6]).get("user.rootlesscontainers")
    assert owner == (b"\x08\xe8\x07\x10\xe8\x07" if rootless else None)  # uid 1000, gid 1000
    if rootless:  # root ids are written as uint32(-1); root:root gets no record
        assert dict(theirs["usr/bin/sgid"][6])["user.rootlesscontainers"] == b"\x08\xff\xff\xff\xff\x0f\x10*"
        assert "user.rootlesscontainers" not in dict(theirs["usr/bin/su"][6])


def test_rootless_owner_record_replaces_one_from_the_layer(tmp_path, caplog):
    forged = I.f("f", "x", uid=5, gid=0)
    forged[0].pax_headers = {"SCHILY.xattr.user.rootlesscontainers": "\x08\x00"}
    root = apply(tmp_path / "r", I.tar_bytes([forged, I.sym("l", "f", uid=7)]), rootless=True)
    assert os.getxattr(root / "f", "user.rootlesscontainers") == b"\x08\x05\x10\xff\xff\xff\xff\x0f"
    assert os.readlink(root / "l") == "f"  # symlinks cannot carry user.* xattrs: no record, no error
    assert "ignoring the user.rootlesscontainers xattr stored in the layer" in caplog.text


def test_opaque_whiteout_keeps_same_layer_entries_and_hides_lower(tmp_path):
    root = apply(tmp_path / "r",
                 I.tar_bytes([I.f("d/lower", "1"), I.f("d/sub/deep", "2")]),
                 I.tar_bytes([I.f("d/new", "3"), I.opaque("d"), I.wh("d/new")]))
    assert sorted(os.listdir(root / "d")) == ["new"]


def test_hardlink_into_lower_layer(tmp_path):
    root = apply(tmp_path / "r", I.tar_bytes([I.f("a/file", "x")]),
                 I.tar_bytes([I.hard("b/link", "a/file")]))
    assert os.stat(root / "b/link").st_ino == os.stat(root / "a/file").st_ino


def test_directory_replaced_by_file_and_back(tmp_path):
    root = apply(tmp_path / "r", I.tar_bytes([I.f("x/inner", "1")]), I.tar_bytes([I.f("x", "now a file")]),
                 I.tar_bytes([I.f("x/again", "2")]))
    assert (root / "x").is_dir() and os.listdir(root / "x") == ["again"]


HOSTILE = {
    "dotdot": [I.f("../../escape.txt", "pwned"), I.f("a/../../../escape2.txt", "pwned")],
    "absolute": [I.f("/HOST/planted", "pwned")],
    "symlink-dir-escape": [I.sym("link", "../../HOST"), I.f("link/planted", "pwned")],
    "absolute-symlink-escape": [I.sym("abs", "{host}"), I.f("abs/planted", "pwned")],
    "symlink-chain": [I.sym("a", "b/../../.."), I.sym("b", "/c/../../.."), I.f("a/HOST/planted", "pwned")],
    "hardlink-out": [I.hard("stolen", "../../HOST/secret")],
    "hardlink-abs": [I.hard("stolen", "{host}/secret")],
    "hardlink-via-symlink": [I.sym("l", "{host}"), I.hard("stolen", "l/secret")],
    "whiteout-parent": [I.f("sub/.wh..."), I.f(".wh.."), I.f("sub/.wh..")],
    "whiteout-via-symlink": [I.sym("l", "{host}"), I.wh("l/secret"), I.opaque("l")],
    "overwrite-through-symlink": [I.sym("s", "{host}/secret"), I.f("s", "replaced")],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("rootless,threaded", [(False, None), (True, None), (False, True)],
                         ids=["root", "rootless", "root-threads"])
def test_hostile_entries_never_touch_the_host(tmp_path, name, rootless, threaded):
    host = tmp_path / "HOST"
    host.mkdir()
    (host / "secret").write_text("do not touch")
    (host / "dir").mkdir()
    (host / "dir" / "file").write_text("keep")
    root = tmp_path / "work" / "deep" / "rootfs"
    root.mkdir(parents=True)
    before = snapshot(tmp_path)
    entries = []
    for ti, data in HOSTILE[name]:
        ti = copy.copy(ti)
        ti.name = ti.name.replace("{host}", str(host))
        ti.linkname = ti.linkname.replace("{host}", str(host))
        entries.append((ti, data))
    try:
        apply(root, I.tar_bytes(entries), rootless=rootless, threaded=threaded)
    except LayerError:
        pass  # refusing is fine; writing outside is not
    after = snapshot(tmp_path)
    outside = {k: v for k, v in after.items() if not k.startswith("work/deep/rootfs/")}
    assert outside == before
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "work/escape2.txt").exists()


def test_escaping_names_land_inside_the_rootfs(tmp_path):
    root = apply(tmp_path / "r", I.tar_bytes([I.f("../../etc/evil", "x"), I.sym("lib64", "/lib"),
                                               I.f("lib/ld.so", "ld"), I.f("lib64/extra", "via link")]))
    assert (root / "etc/evil").read_text() == "x"
    assert (root / "lib/extra").read_text() == "via link"  # absolute symlink read inside the root


def test_entry_replacing_root_is_refused(tmp_path):
    with pytest.raises(LayerError, match="root directory"):
        apply(tmp_path / "r", I.tar_bytes([I.sym(".", "/etc")]))


def test_truncated_layer_is_an_error(tmp_path):
    data = I.tar_bytes([I.f("big", os.urandom(100000))])
    applier = LayerApplier(tmp_path / "r")
    (tmp_path / "r").mkdir()
    with pytest.raises(LayerError):
        applier.apply(decompressed(io.BytesIO(I.gz(data)[:2000])))


@pytest.mark.parametrize("threaded", [None, True], ids=["adaptive", "threads"])
def test_file_then_child_in_the_same_layer(tmp_path, threaded):
    # with threads, the file is still being written when its "child" arrives
    root = apply(tmp_path / "r", I.tar_bytes([I.f("x", "file"), I.f("x/y", "child"), I.f("z", "1"),
                                               I.hard("z2", "z"), I.f("z", "2")]), threaded=threaded)
    assert (root / "x" / "y").read_text() == "child"
    assert (root / "z2").read_text() == "1" and (root / "z").read_text() == "2"


def test_gzip_layers_read_the_same_with_zlib_and_zlib_ng(tmp_path, monkeypatch):
    import zlib

    import builder.sources.oci.stream as stream

    layers = I.standard_layers()
    broken = bytearray(I.gz(layers[0]))
    broken[-8] ^= 0xFF  # the gzip trailer's CRC32: the data inflates, the check fails at the end

    def read_all(blob):
        reader = decompressed(io.BytesIO(bytes(blob)))
        while reader.read(1 << 20):
            pass

    fast = apply(tmp_path / "fast", *layers)  # zlib-ng when installed
    with pytest.raises(LayerError, match="corrupt gzip data"):
        read_all(broken)
    monkeypatch.setattr(stream, "_zlib", zlib)
    assert I.file_tree(apply(tmp_path / "stdlib", *layers)) == I.file_tree(fast)
    with pytest.raises(LayerError, match="corrupt gzip data"):
        read_all(broken)


_BIG_LAYER = r"""
import io, sys, tarfile
from builder.sources.oci import LayerApplier
from builder.sources.oci.stream import LayerPump

SIZE = 384 << 20
ti = tarfile.TarInfo("big.bin"); ti.size = SIZE; ti.mtime = 1
head = ti.tobuf(format=tarfile.PAX_FORMAT)

class Stream(io.RawIOBase):  # a 384 MiB layer made on the fly, never held in memory
    def __init__(self):
        self.parts = [head] + [b"\0" * (1 << 20)] * (SIZE >> 20) + [b"\0" * 1024]
    def readable(self):
        return True
    def readinto(self, buf):
        if not self.parts:
            return 0
        part = self.parts.pop(0)
        buf[:len(part)] = part
        return len(part)

class Open:
    def __enter__(self):
        return io.BufferedReader(Stream(), 1 << 20)
    def __exit__(self, *a):
        return False

applier = LayerApplier(sys.argv[1])
with LayerPump(lambda i: Open(), ["application/vnd.oci.image.layer.v1.tar"]) as pump:
    reader = pump.reader(0)
    applier.apply(reader)
    reader.drain()
applier.finish()
print([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_layer(tmp_path):
    import sys

    out = subprocess.run([sys.executable, "-c", _BIG_LAYER, str(tmp_path / "r")], capture_output=True,
                         text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert os.path.getsize(tmp_path / "r" / "big.bin") == 384 << 20
    assert int(out.stdout) < 100 * 1024  # KiB: a 384 MiB layer through a process of < 100 MiB
