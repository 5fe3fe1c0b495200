"""The architecture of a root filesystem, from the ELF header of its ``/bin/sh``.

As Apptainer's SIF assembler does: ``/bin/sh`` (links followed inside the rootfs), else
the first ELF executable in /bin, /usr/bin, /sbin, /usr/sbin, else the host's arch.
Names are Go's GOARCH values, which is what SIF stores.
"""

from __future__ import annotations

import logging
import platform
import struct

from builder.images.reader import Tree

__all__ = ["elf_arch", "rootfs_arch", "host_arch"]

log = logging.getLogger("sbuild.images")

_MACHINES = {3: "386", 62: "amd64", 40: "arm", 183: "arm64", 22: "s390x", 243: "riscv64",
             258: "loong64"}
_HOST = {"x86_64": "amd64", "i386": "386", "i686": "386", "aarch64": "arm64", "armv7l": "arm",
         "armv6l": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
         "riscv64": "riscv64", "loongarch64": "loong64", "mips64": "mips64"}


def elf_arch(head: bytes) -> str | None:
    """GOARCH for an ELF header (first 20+ bytes), or None if not ELF / unknown machine."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    is64, little = head[4] == 2, head[5] == 1
    machine, = struct.unpack_from("<H" if little else ">H", head, 18)
    if machine == 21:
        return "ppc64le" if little else "ppc64"
    if machine == 8:
        base = "mips64" if is64 else "mips"
        return base + ("le" if little else "")
    return _MACHINES.get(machine)


def host_arch() -> str:
    return _HOST.get(platform.machine(), platform.machine())


def rootfs_arch(tree: Tree) -> str:
    """The rootfs's GOARCH (see module docstring)."""
    arch = elf_arch(tree.read_bytes("/bin/sh", 64) or b"")
    if arch:
        return arch
    for d in ("/bin", "/usr/bin", "/sbin", "/usr/sbin"):
        for name in tree.listdir(d)[:200]:
            if tree.is_file(f"{d}/{name}"):
                arch = elf_arch(tree.read_bytes(f"{d}/{name}", 64) or b"")
                if arch:
                    return arch
    arch = host_arch()
    log.debug("no ELF executable found in the rootfs, using the host arch %s", arch)
    return arch
