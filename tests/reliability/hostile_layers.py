"""Hostile layer patterns built in memory, and a runner that applies them and says what happened.

``PATTERNS`` maps a name to ``build(canary) -> [layer tar bytes, ...]``: each layer set tries
to reach ``canary`` (an absolute host directory beside the rootfs) or to crash, exhaust or
confuse the applier (deep trees, NUL and invalid bytes, numeric overflow in headers, sparse
claims, bounded bombs, hardlinks and symlinks through every kind of parent, whiteouts and
opaque markers aimed outside, device nodes, absolute and ``../`` link targets, duplicates,
file-then-directory replacement).

``apply_one(name, work)`` applies one pattern to ``work/r`` with ``work/canary`` as the canary
and returns ``{"name", "outcome", "error", "message", "canary_changed", "outside"}``:
``outcome`` is ``applied``, ``refused`` (an ``SbuildError`` subclass) or ``internal`` (any other
exception: a bug). Run as a script (``python hostile_layers.py WORK [--userns] NAME...``) it
applies each named pattern in its own sub-directory and prints one JSON line per pattern; the
rootless tests run it as the unprivileged user, optionally inside the runtime's user namespace.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "registry"))
sys.path.insert(0, str(HERE.parents[1]))

import images as I  # noqa: E402

__all__ = ["PATTERNS", "apply_one", "snapshot"]


def _raw_header(name: bytes, *, size: bytes = b"%011o\0" % 0, typeflag: bytes = b"0", linkname: bytes = b"",
                mode: bytes = b"0000644\0", magic: bytes = b"ustar\x0000", fix_sum: bool = True) -> bytes:
    """One ustar header from raw fields (bytes a ``tarfile`` writer would refuse)."""
    h = bytearray(512)
    h[0:len(name[:100])] = name[:100]
    h[100:108] = mode
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size.ljust(12, b"\0")[:12]
    h[136:148] = b"%011o\0" % I.MTIME
    h[156:157] = typeflag
    h[157:157 + len(linkname[:100])] = linkname[:100]
    h[257:265] = magic
    h[148:156] = b" " * 8
    if fix_sum:
        h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _raw(*members: tuple[bytes, bytes]) -> bytes:
    """A tar of raw ``(header, data)`` members and the end-of-archive blocks."""
    out = b""
    for header, data in members:
        out += header + data + bytes(-len(data) % 512)
    return out + bytes(1024)


def _pax(entry, **records):
    entry[0].pax_headers = records
    return entry


def _sparse(name: str, realsize: int, regions: list[tuple[int, int]], data: bytes, sparse_map: bytes = b"") -> bytes:
    """A GNU sparse 1.0 member (pax): ``sparse_map`` (default: made from ``regions``), then ``data``."""
    lines = [str(len(regions))] + [str(n) for off, size in regions for n in (off, size)]
    sparse_map = sparse_map or ("\n".join(lines) + "\n").encode()
    body = sparse_map + bytes(-len(sparse_map) % 512) + data
    ti, _ = I.f(f"GNUSparseFile.0/{name}", body)
    ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                      "GNU.sparse.realsize": str(realsize)}
    return I.tar_bytes([(ti, body)])


def _base256(value: int, width: int) -> bytes:
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def _t(*entries) -> bytes:
    return I.tar_bytes(list(entries))


def _rel(canary: str, depth: int = 1) -> str:
    """``canary`` as seen from ``depth`` levels inside the rootfs (``../`` climbs)."""
    return "../" * depth + os.path.basename(canary)


# Each pattern: canary (absolute host path) -> layers. The canary holds dir/file ("keep").
PATTERNS = {
    # --- names that climb or are absolute
    "dotdot-entry-name": lambda c: [_t(I.f(_rel(c) + "/dir/file", "pwned"))],
    "dotdot-in-the-middle": lambda c: [_t(I.f("a/../../" + os.path.basename(c) + "/dir/file", "pwned"))],
    "absolute-entry-name": lambda c: [_t(I.f(c + "/dir/file", "pwned"))],
    "absolute-dir-entry": lambda c: [_t(I.d(c + "/newdir"))],
    "only-dotdots": lambda c: [_t(I.f("../../../../..", "x"), I.d("../../.."))],
    "dot-and-empty-names": lambda c: [_raw((_raw_header(b"./", typeflag=b"5"), b""),
                                           (_raw_header(b".", typeflag=b"5"), b""))],
    # --- symlinks as parents (absolute, relative, chained, looping, across layers)
    "symlink-parent-absolute": lambda c: [_t(I.sym("x", c), I.f("x/dir/file", "pwned"))],
    "symlink-parent-relative": lambda c: [_t(I.sym("x", _rel(c)), I.f("x/dir/file", "pwned"))],
    "symlink-parent-deep-relative": lambda c: [_t(I.d("a"), I.d("a/b"), I.sym("a/b/x", _rel(c, 7)),
                                                  I.f("a/b/x/dir/file", "pwned"))],
    "symlink-chain-parent": lambda c: [_t(I.sym("x", "y"), I.sym("y", "z/.."), I.d("z"), I.sym("z/w", c),
                                          I.sym("y2", "z/w"), I.f("y2/dir/file", "pwned"))],
    "symlink-to-root-dotdot-parent": lambda c: [_t(I.sym("up", "../../../../../../.."),
                                                   I.f("up" + c + "/dir/file", "pwned"))],
    "symlink-parent-across-layers": lambda c: [_t(I.sym("x", c)), _t(I.f("x/dir/file", "pwned"))],
    "dir-replaced-by-symlink-next-layer": lambda c: [_t(I.d("x"), I.f("x/a", "a")), _t(I.sym("x", c)),
                                                     _t(I.f("x/dir/file", "pwned"))],
    "symlink-self-loop-parent": lambda c: [_t(I.sym("a", "a"), I.f("a/f", "x"))],
    "symlink-pair-loop-parent": lambda c: [_t(I.sym("a", "b"), I.sym("b", "a"), I.f("a/f", "x"))],
    "symlink-chain-100": lambda c: [_t(*[I.sym(f"s{i}", f"s{i + 1}") for i in range(100)], I.sym("s100", c),
                                       I.f("s0/dir/file", "pwned"))],
    "symlink-last-component-replaced": lambda c: [_t(I.sym("f", c + "/dir/file"), I.f("f", "inside"))],
    "symlink-long-target": lambda c: [_t(I.sym("l", "/".join([".."] * 2000) + c))],
    "symlink-dir-then-dir-entry": lambda c: [_t(I.sym("x", c), I.d("x/dir", mode=0o700))],
    "symlink-parent-fifo": lambda c: [_t(I.sym("x", c), I.fifo("x/dir/fifo"))],
    "symlink-parent-device": lambda c: [_t(I.sym("x", c), I.chardev("x/dir/null", 1, 3))],
    "symlink-parent-hardlink-entry": lambda c: [_t(I.f("t", "t"), I.sym("x", c), I.hard("x/dir/h", "t"))],
    # --- hardlinks out and odd
    "hardlink-absolute-target": lambda c: [_t(I.hard("h", c + "/dir/file"))],
    "hardlink-dotdot-target": lambda c: [_t(I.hard("h", _rel(c) + "/dir/file"))],
    "hardlink-through-symlink": lambda c: [_t(I.sym("x", c), I.hard("h", "x/dir/file"))],
    "hardlink-then-overwrite": lambda c: [_t(I.sym("x", c), I.hard("h", "x/dir/file"), I.f("h", "pwned"))],
    "hardlink-to-directory": lambda c: [_t(I.d("d"), I.hard("h", "d"))],
    "hardlink-to-itself": lambda c: [_t(I.hard("h", "h"))],
    "hardlink-to-missing": lambda c: [_t(I.hard("h", "nowhere"))],
    "hardlink-to-symlink-out": lambda c: [_t(I.sym("s", c + "/dir/file"), I.hard("h", "s"), I.f("h2", "x"))],
    # --- whiteouts and opaque markers aimed outside
    "whiteout-through-symlink": lambda c: [_t(I.sym("x", c)), _t(I.wh("x/dir"))],
    "opaque-through-symlink": lambda c: [_t(I.sym("x", c)), _t(I.opaque("x/dir"))],
    "whiteout-absolute": lambda c: [_t(I.wh(c + "/dir"))],
    "whiteout-dotdot": lambda c: [_t(I.wh(_rel(c))), _t(I.f(".wh.."), I.f(".wh..."))],
    "opaque-at-top-and-dotdot": lambda c: [_t(I.f("a", "a")), _t(I.f(".wh..wh..opq"), I.f("../.wh..wh..opq"))],
    "whiteout-symlink-loop": lambda c: [_t(I.sym("a", "a")), _t(I.wh("a/b"), I.opaque("a"))],
    # --- replacement and duplicates
    "file-then-dir": lambda c: [_t(I.f("p", "file"), I.d("p"), I.f("p/q", "q"))],
    "dir-then-file": lambda c: [_t(I.d("p"), I.f("p/q", "q"), I.f("p", "file"))],
    "dir-with-children-then-symlink-out": lambda c: [_t(I.d("p"), I.f("p/q", "q"), I.sym("p", c),
                                                        I.f("p/dir/file", "pwned"))],
    "duplicate-entries": lambda c: [_t(I.f("dup", "one"), I.f("dup", "two"), I.d("dd"), I.d("dd", mode=0o700))],
    "read-only-dir-then-children": lambda c: [_t(I.d("ro", mode=0o000), I.f("ro/a", "a", mode=0o000),
                                                 I.d("ro/sub", mode=0o000), I.f("ro/sub/b", "b"))],
    # --- device nodes
    "device-nodes": lambda c: [_t(I.chardev("dev/mem", 1, 1, mode=0o666),
                                  (I._info("dev/sda", tarfile.BLKTYPE, 0o660, devmajor=8, devminor=0), None),
                                  I.chardev("suid-dev", 1, 3, mode=0o4777))],
    # --- NUL, invalid bytes and header damage
    "invalid-utf8-name": lambda c: [_raw((_raw_header(b"caf\xe9-\xff\xfe", size=b"%011o\0" % 2), b"ok"))],
    "nul-in-ustar-linkname": lambda c: [_raw((_raw_header(b"l", typeflag=b"2", linkname=b"ta\0rget/../../x"),
                                              b""))],
    "bad-checksum": lambda c: [_raw((_raw_header(b"a", fix_sum=False)[:148] + b"1234567\0"
                                     + _raw_header(b"a", fix_sum=False)[156:], b""))],
    "garbage-octal-size": lambda c: [_raw((_raw_header(b"a", size=b"99zz9\0"), b""))],
    "size-overflow-base256": lambda c: [_raw((_raw_header(b"a", size=_base256(1 << 80, 12)), b"x"))],
    "size-claim-beyond-data": lambda c: [_raw((_raw_header(b"a", size=b"%011o\0" % (1 << 30)), b"short"))[:1536]],
    "truncated-mid-header": lambda c: [_t(I.f("a", "a"), I.f("b", "b"))[:700]],
    "not-a-tar": lambda c: [hashlib.sha512(b"noise").digest() * 40],
    "pax-record-length-huge": lambda c: [_raw((_raw_header(b"PaxHeaders/a", typeflag=b"x", size=b"%011o\0" % 24),
                                               b"99999999999 path=zzzzz\n\0"), (_raw_header(b"a"), b""))],
    "pax-record-malformed": lambda c: [_raw((_raw_header(b"PaxHeaders/a", typeflag=b"x", size=b"%011o\0" % 12),
                                             b"5 x\n7 =\n\0\0\0\0"), (_raw_header(b"a"), b""))],
    "gnu-longname-claims-1gb": lambda c: [_raw((_raw_header(b"././@LongLink", typeflag=b"L",
                                                            size=b"%011o\0" % (1 << 30)), b"name"))[:2048]],
    "unknown-typeflag": lambda c: [_raw((_raw_header(b"weird", typeflag=b"Z", size=b"%011o\0" % 3), b"abc"))],
    "mtime-negative-and-uid-huge": lambda c: [_t(I.f("neg", "x", mtime=-(1 << 40)),
                                                 _pax(I.f("u", "x"), uid=str(1 << 70)))],
    "xattrs-privileged-and-junk": lambda c: [_t(_pax(I.f("x", "x"), **{
        "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\xff\xff\xff\xff",
        "SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.system.posix_acl_access": "junk",
        "SCHILY.xattr.user." + "k" * 300: "v"}))],
    # --- sparse claims and bounded bombs
    "sparse-region-beyond-realsize": lambda c: [_sparse("s", 100, [(1 << 30, 5)], b"hello" + bytes(507))],
    "sparse-map-claims-a-billion-regions": lambda c: [_sparse("s", 1 << 30, [], b"", b"1000000000\n0\n1\n")],
    "sparse-overlapping-regions": lambda c: [_sparse("s", 4096, [(0, 3), (1, 3)], b"abcdef" + bytes(506))],
    "sparse-huge-realsize": lambda c: [_sparse("s", 1 << 62, [((1 << 62) - 1, 1)], b"z" + bytes(511))],
    "many-empty-files-bomb": lambda c: [_t(*[I.f(f"m/{i:05d}") for i in range(3000)])],
    "deep-tree-1200": lambda c: [_t(I.f("/".join(["d"] * 1200) + "/leaf", "x"))],
    "wide-directory-names": lambda c: [_t(*[I.f("w/" + ("n%03d" % i) * 60, "x") for i in range(50)])],
}


def snapshot(path: str | os.PathLike) -> dict:
    """Every path below ``path`` with its type, mode, owner, size, mtime and content digest."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            body = hashlib.sha256(Path(p).read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else (
                os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                             st.st_nlink, body)
    return out


def _make_canary(work: Path) -> Path:
    c = work / "canary"
    (c / "dir").mkdir(parents=True)
    (c / "dir" / "file").write_text("keep")
    os.utime(c / "dir" / "file", (I.MTIME, I.MTIME))
    return c


def apply_one(name: str, work: str | os.PathLike) -> dict:
    """Apply pattern ``name`` to ``work/r`` beside the canary ``work/canary``; see the module docstring."""
    from base.errors import SbuildError
    from base.fsutil import remove_tree
    from builder.sources.oci import LayerApplier

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    canary = _make_canary(work)
    before, around = snapshot(canary), sorted(os.listdir(work.parent))
    result = {"name": name, "outcome": "applied", "error": None, "message": ""}
    started = time.monotonic()
    try:
        applier = LayerApplier(work / "r")
        for layer in PATTERNS[name](str(canary)):
            applier.apply(io.BytesIO(layer))
        applier.finish()
    except SbuildError as e:
        result.update(outcome="refused", error=type(e).__name__, message=str(e)[:300])
    except BaseException as e:  # noqa: BLE001 - the point: anything else is a bug
        result.update(outcome="internal", error=type(e).__name__,
                      message="".join(traceback.format_exception(e))[-1500:])
    result["seconds"] = round(time.monotonic() - started, 3)
    result["canary_changed"] = snapshot(canary) != before
    result["outside"] = sorted(set(os.listdir(work)) - {"r", "canary"}) + (
        ["<beside work>"] if sorted(os.listdir(work.parent)) != around else [])
    remove_tree(work / "r")
    return result


def _main(argv: list[str]) -> int:
    work, names = Path(argv[0]), argv[1:]
    userns = names[:1] == ["--userns"]
    names = names[1:] if userns else names
    if userns:
        from runtime import call_in_userns
        results = call_in_userns(_all, names, str(work))
    else:
        results = _all(names, str(work))
    for r in results:
        print(json.dumps(r), flush=True)
    return 0


def _all(names: list[str], work: str) -> list[dict]:
    return [apply_one(n, Path(work) / n) for n in names]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
