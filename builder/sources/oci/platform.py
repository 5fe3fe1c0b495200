"""Platforms (os/arch/variant) and the choice of a manifest from an index.

Matching follows containers/image: os and architecture exactly equal; the variant tried
is the wanted one, then the compatible ones (arm: v8>v7>v6>v5, arm64: v8), then none.
``unknown/unknown`` (BuildKit attestations) is skipped; no match is an error that lists
what the index offers, never a silent fallback.
"""

from __future__ import annotations

import platform as _host
from dataclasses import dataclass

from builder.sources.oci.errors import PlatformError

__all__ = ["Platform", "parse_platform", "host_platform", "select_manifest"]

_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386",
         "armhf": "arm/v7", "armel": "arm/v6", "armv7l": "arm/v7", "armv6l": "arm/v6",
         "ppc64el": "ppc64le"}
_COMPAT = {"arm": ["v8", "v7", "v6", "v5"], "arm64": ["v8"]}


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def parse_platform(arch: str, variant: str | None = None, os_name: str = "linux") -> Platform:
    """``amd64``, ``x86_64``, ``arm64/v8``, ``linux/arm/v7``, ``armhf`` ... to a Platform."""
    parts = arch.strip().lower().split("/")
    if len(parts) == 3 or (len(parts) == 2 and parts[0] in ("linux", "windows", "darwin")):
        os_name, parts = parts[0], parts[1:]
    name = _ARCH.get(parts[0], parts[0])
    if "/" in name:
        name, implied = name.split("/")
        variant = variant or implied
    if len(parts) > 1:
        variant = variant or parts[1]
    if name == "arm" and variant and variant.isdigit():
        variant = "v" + variant
    return Platform(os_name, name, variant or None)


def host_platform() -> Platform:
    machine = _host.machine()
    variant = None
    arch = _ARCH.get(machine, machine)
    if arch.startswith("arm") and "/" not in arch:
        variant = _cpu_variant()
    return parse_platform(arch, variant)


def _cpu_variant() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("cpu architecture"):
                    value = line.split(":", 1)[1].strip()
                    return "v" + value if value.isdigit() else None
    except OSError:
        pass
    return None


def select_manifest(manifests: list[dict], want: Platform) -> dict:
    """The first descriptor in ``manifests`` (an index's list) that suits ``want``."""
    candidates = [m for m in manifests
                  if (m.get("platform") or {}).get("os") == want.os
                  and (m.get("platform") or {}).get("architecture") == want.architecture]
    order = [want.variant] if want.variant else [None]
    order += [v for v in _COMPAT.get(want.architecture, []) if v not in order]
    order.append(None)
    for variant in order:
        for m in candidates:
            if (m["platform"].get("variant") or None) == variant:
                return m
    offered = sorted({_describe(m) for m in manifests if _describe(m) != "unknown/unknown"})
    raise PlatformError(f"no image for platform {want} in this index",
                        hint=f"available: {', '.join(offered) or 'none'}; choose one with --arch")


def _describe(m: dict) -> str:
    p = m.get("platform") or {}
    return "/".join(x for x in (p.get("os", "?"), p.get("architecture", "?"), p.get("variant")) if x)
