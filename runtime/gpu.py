"""``--nv`` / ``--rocm``: the host's GPU libraries, programs and devices, bound as Apptainer does.

``gpu_binds(kinds)`` looks up the libraries Apptainer's ``nvliblist.conf`` /
``rocmliblist.conf`` name in the ldconfig cache (``ldconfig -p``) and binds each at
``/.singularity.d/libs/<name>`` (on the container's ``LD_LIBRARY_PATH``), the programs found
on PATH at ``/usr/bin/<name>``, and the devices (``/dev/nvidia*``, ``/dev/kfd``, ``/dev/dri``)
at their own paths, all read-only but the devices. With nothing found, Apptainer's warnings
("Could not find any nv files on this host!") and the command still runs.
Limits: the lists are the common part of Apptainer's (no per-driver-version files).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess

from runtime.description import Bind

__all__ = ["gpu_binds"]

_LIBS = {
    "nv": ("libcuda.so", "libcudadebugger.so", "libEGL_nvidia.so", "libGLESv1_CM_nvidia.so",
           "libGLESv2_nvidia.so", "libGLX_nvidia.so", "libnvcuvid.so", "libnvidia-cfg.so", "libnvidia-compiler.so",
           "libnvidia-eglcore.so", "libnvidia-egl-wayland.so", "libnvidia-encode.so", "libnvidia-fatbinaryloader.so",
           "libnvidia-fbc.so", "libnvidia-glcore.so", "libnvidia-glsi.so", "libnvidia-glvkspirv.so",
           "libnvidia-gtk2.so", "libnvidia-gtk3.so", "libnvidia-ifr.so", "libnvidia-ml.so", "libnvidia-nvvm.so",
           "libnvidia-opencl.so", "libnvidia-opticalflow.so", "libnvidia-ptxjitcompiler.so", "libnvidia-rtcore.so",
           "libnvidia-tls.so", "libnvoptix.so", "libvdpau_nvidia.so"),
    "rocm": ("libamd_comgr.so", "libamdhip64.so", "libhsa-runtime64.so", "libhsakmt.so", "libdrm_amdgpu.so",
             "librocm_smi64.so", "libamdocl64.so", "libMIOpen.so", "librocblas.so"),
}
_BINS = {
    "nv": ("nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control",
           "nvidia-cuda-mps-server"),
    "rocm": ("rocm-smi", "rocminfo"),
}
_DEVICES = {"nv": ("/dev/nvidia*", "/dev/nvidia-caps"), "rocm": ("/dev/kfd", "/dev/dri")}


def _ldconfig() -> list[tuple[str, str]]:
    """``(soname, path)`` of the ldconfig cache."""
    tool = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        out = subprocess.run([tool, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines()[1:]:
        name, _, path = line.strip().partition(" => ")
        if path:
            found.append((name.split(" (")[0], path))
    return found


def _one(kind: str, cache: list[tuple[str, str]]) -> list[Bind]:
    log = logging.getLogger("sbuild.runtime")
    libs = {}
    for soname, path in cache:
        if any(soname.startswith(base) for base in _LIBS[kind]) and soname not in libs:
            libs[soname] = path
    binds = [Bind(os.path.realpath(p), f"/.singularity.d/libs/{n}", True) for n, p in libs.items()]
    for name in _BINS[kind]:
        if path := shutil.which(name):
            binds.append(Bind(os.path.realpath(path), f"/usr/bin/{name}", True))
    for pattern in _DEVICES[kind]:
        binds += [Bind(dev, dev, False) for dev in sorted(glob.glob(pattern))]
    if not binds:
        log.warning("Could not find any %s files on this host!", kind)
    if not libs:
        log.warning("Could not find any %s libraries on this host!", kind)
    return binds


def gpu_binds(kinds: tuple[str, ...]) -> tuple[Bind, ...]:
    """The binds for ``kinds`` (``nv``, ``rocm``) on this host; warnings when none are found."""
    cache = _ldconfig()
    return tuple(b for kind in kinds for b in _one(kind, cache))
