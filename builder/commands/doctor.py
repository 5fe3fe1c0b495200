"""``sbuild doctor``: what this host offers the runtime and the builder, and what follows.

The runtime's probes are ``runtime.capabilities``; the builder's tools (mksquashfs and
unsquashfs, with their versions and mksquashfs's compressors; the package agents' dnf, rpm,
zypper, pacman and pacstrap, with the Debian package of each missing one) are checked here. Prints a
two-line entry per check, or a JSON array with ``--json``; always exits 0.
"""

from __future__ import annotations

import shutil
import subprocess

from builder.commands import add_output_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from runtime.capabilities import Check

__all__ = ["register", "tool_checks", "agent_tool_checks", "render"]


def register(subparsers, only: str | None = None) -> None:  # noqa: ARG001 - one command
    p = subparsers.add_parser("doctor", help="report what this host can do",
                              description="report which runtime capabilities this host has")
    add_output_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_doctor)


def _version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unusable ({e})"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0] if text else "present"


def _compressors() -> str:
    if not shutil.which("mksquashfs"):
        return ""
    r = subprocess.run(["mksquashfs", "-help"], capture_output=True, text=True)
    text = r.stdout + r.stderr
    found = [c for c in ("gzip", "lzo", "lz4", "xz", "zstd", "lzma") if f"\t{c}" in text or f" {c}" in text]
    return ", ".join(found)


def _missing_meaning(tool: str) -> str:
    if tool == "mksquashfs":
        return ("sbuild packs gzip images itself; --mksquashfs-args and SBUILD_PACKER=mksquashfs need it "
                "(apt-get install squashfs-tools)")
    return "images are extracted with PySquashfsImage (slower); apt-get install squashfs-tools"


def tool_checks() -> list[Check]:
    """mksquashfs and unsquashfs: present, their version, what they are used for."""
    from runtime.capabilities import Check

    out = []
    for tool in ("mksquashfs", "unsquashfs"):
        path = shutil.which(tool)
        out.append(Check(tool, bool(path), _version([tool, "-version"]) if path else "not installed",
                         _missing_meaning(tool) if not path else
                         ("compressors: " + _compressors() + " (for --mksquashfs-args; sbuild packs gzip images "
                          "itself)" if tool == "mksquashfs" else "fast image extraction")))
    return out


def agent_tool_checks() -> list[Check]:
    """The host programs of the package agents (yum/dnf, zypper, arch): found or the package to install."""
    from builder.sources.pkgtools import HOST_TOOLS, missing_tools
    from runtime.capabilities import Check

    users: dict[tuple[str, str], list[str]] = {}
    for agent, tools in HOST_TOOLS.items():
        for tool in tools:
            users.setdefault(tool, []).append(agent)
    out = []
    for (tool, package), agents in users.items():
        path = shutil.which(tool) or (tool == "dnf" and shutil.which("yum"))
        absent = (tool, package) in missing_tools(agents[0])
        what = "Bootstrap: " + "/".join(agents)
        out.append(Check(tool, not absent, path or "not installed",
                         f"needed for {what} only (apt-get install {package})" if absent else f"used by {what}"))
    return out


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{'ok ' if c.ok else 'no '} {c.name:<{width}}  {c.detail}")
        lines.append(f"    {'':<{width}}  -> {c.meaning}")
    return "\n".join(lines)


def _doctor(args: argparse.Namespace) -> int:
    from runtime import capabilities

    report = [*capabilities.check(), *tool_checks(), *agent_tool_checks()]
    if args.json:
        import json

        print(json.dumps([c.as_json() for c in report], indent=2))
    else:
        print(render(report))
    return 0
