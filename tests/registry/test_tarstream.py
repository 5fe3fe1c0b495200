"""The layer tar reader: the formats real layers come in, and broken archives refused."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile

import images as I
import pytest

from builder.sources.oci import LayerApplier
from builder.sources.oci.errors import LayerError
from builder.sources.oci.tarstream import TarReader


def entries(data: bytes) -> list[tuple]:
    reader = TarReader(io.BytesIO(data).read)
    out = []
    for e in reader:
        body = reader.data(e) if e.isreg() else None
        out.append((e.name, e.type, e.mode, e.uid, e.gid, e.linkname, body))
    return out


def apply_one(root, data: bytes):
    applier = LayerApplier(root)
    applier.apply(io.BytesIO(data))
    applier.finish()
    return root


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])
def test_formats_read_like_tarfile(fmt):
    long = "d/" + "n" * 120 + "/file"  # needs a prefix (ustar), L (gnu) or path (pax)
    members = [I.d("d"), I.f(long if fmt != tarfile.USTAR_FORMAT else "d/" + "n" * 90 + "/f", "data", 0o640,
                             uid=1000, gid=100),
               I.sym("d/link", "../" + "t" * 150 if fmt != tarfile.USTAR_FORMAT else "target"),
               I.hard("d/hard", "d"), I.fifo("p")]
    data = I.tar_bytes(members, fmt=fmt)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        expect = [(m.name, m.type, m.mode, m.uid, m.gid, m.linkname,
                   tf.extractfile(m).read() if m.isreg() else None) for m in tf]
    assert [(n.rstrip("/"), *rest) for n, *rest in entries(data)] == expect


def test_large_ids_in_base_256_and_exact_pax_times():
    ti, data = I.f("big", "x", uid=3_000_000, gid=4_000_000, mtime=-86400)
    gnu = I.tar_bytes([(ti, data)], fmt=tarfile.GNU_FORMAT)  # base-256 uid/gid/mtime fields
    assert entries(gnu)[0][3:5] == (3_000_000, 4_000_000)
    assert TarReader(io.BytesIO(gnu).read).next().mtime_ns == -86400 * 10**9  # before 1970
    ti.mtime = I.MTIME
    ti.pax_headers = {"mtime": "1600000000.123456789", "atime": "-1.5"}
    reader = TarReader(io.BytesIO(I.tar_bytes([(ti, data)])).read)
    e = reader.next()
    assert e.mtime_ns == 1_600_000_000_123_456_789 and e.atime_ns == -1_500_000_000


def test_global_pax_header_is_ignored():
    g = tarfile.TarInfo("pax_global_header")
    g.type = tarfile.XGLTYPE
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "git archive", "uid": "77"}) as tf:
        ti, data = I.f("a", "1")
        tf.addfile(ti, io.BytesIO(data))
    assert [(n, u) for n, _, _, u, *_ in entries(raw.getvalue())] == [("a", 0)]


def test_missing_end_marker_is_accepted_but_truncated_data_is_not():
    data = I.tar_bytes([I.f("a", "x" * 700), I.f("b", "y" * 10)])
    body_end = 512 * 4 + 10  # a's header + 2 data blocks, b's header, 10 bytes of b
    assert [e[6] for e in entries(data[:body_end])] == [b"x" * 700, b"y" * 10]  # padding and marker gone
    with pytest.raises(LayerError, match="unexpected end"):
        entries(data[:body_end - 1])
    with pytest.raises(LayerError, match="unexpected end"):
        entries(data[:512 * 3 + 100])  # inside b's header


def test_corrupt_header_is_refused():
    data = bytearray(I.tar_bytes([I.f("a", "x")]))
    data[10] ^= 0x55
    with pytest.raises(LayerError, match="checksum"):
        entries(bytes(data))


@pytest.mark.parametrize("variant", ["gnu", "0.0", "0.1", "1.0"])
def test_gnu_sparse_files_are_written_with_their_holes(tmp_path, variant):
    if shutil.which("tar") is None:
        pytest.skip("needs GNU tar to make sparse archives")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse.bin", "wb") as fh:
        fh.seek(1 << 20)
        fh.write(b"middle" * 100)
        fh.seek(5 << 20)
        fh.write(b"end")
    fmt = ["--format=gnu"] if variant == "gnu" else ["--format=posix", f"--sparse-version={variant}"]
    layer = subprocess.run(["tar", "-C", str(src), "--sparse", *fmt, "-cf", "-", "sparse.bin"],
                           check=True, capture_output=True).stdout
    root = apply_one(tmp_path / "root", layer)
    assert sorted(os.listdir(root)) == ["sparse.bin"]
    assert (root / "sparse.bin").read_bytes() == (src / "sparse.bin").read_bytes()
    assert os.stat(root / "sparse.bin").st_blocks * 512 < 1 << 20  # holes kept
