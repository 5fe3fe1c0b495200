"""``/.singularity.d/labels.json`` (spec §B.7): merge order, automatic keys, Go's format.

Order: the existing labels.json, then ``/.build.labels`` written by ``%post``, then the
automatic labels (always win), then ``%labels`` (never overriding an existing key unless
``--force``). Times come from ``SOURCE_DATE_EPOCH`` when given, else the clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
from pathlib import Path

from base.gojson import marshal_indent, unmarshal
from builder.rootfs import inside, write_file

__all__ = ["write_labels", "read_label_file", "go_arch", "build_date"]

log = logging.getLogger("sbuild.build")

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386",
           "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def go_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    return _GOARCH.get(machine, machine)


def _now(source_date_epoch: int | None) -> dt.datetime:
    if source_date_epoch is not None:
        return dt.datetime.fromtimestamp(source_date_epoch, dt.timezone.utc)
    return dt.datetime.now().astimezone()


def build_date(when: dt.datetime) -> str:
    """``Monday_2_August_2021_14:9:36_CDT``: Go's layout, no zero padding."""
    zone = when.tzname() or "UTC"
    return (f"{when:%A}_{when.day}_{when:%B}_{when.year}_"
            f"{when.hour}:{when.minute}:{when.second}_{zone}")


def _rfc3339(when: dt.datetime) -> str:
    text = when.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def read_label_file(path: Path) -> dict[str, str]:
    """A JSON object of labels; {} when missing, with a warning when unreadable."""
    try:
        data = unmarshal(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s: %s", path.name, e)
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _read_build_labels(path: Path) -> dict[str, str]:
    """``key value`` lines (first space splits), as Apptainer's GetLabels reads them."""
    labels: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return labels
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        labels[key] = value.strip()
    os.unlink(path)
    return labels


def write_labels(rootfs: Path, *, labels: dict[str, str], header: dict[str, str] | None, has_help: bool,
                 bootstrapped: bool, force: bool, source_date_epoch: int | None, arch: str | None,
                 version: str, auto_labels: dict[str, str] | None = None) -> dict[str, str]:
    """Merge and write labels.json; return the merged labels.

    ``auto_labels`` are more automatic labels from the agent (an OCI source's
    ``org.opencontainers.image.base.*``); like the others they always win."""
    path = inside(rootfs, ".singularity.d/labels.json")
    merged = read_label_file(path)
    merged.update(_read_build_labels(inside(rootfs, ".build.labels")))
    when = _now(source_date_epoch)
    merged["org.label-schema.schema-version"] = "1.0"
    merged["org.opencontainers.image.created"] = _rfc3339(when)
    merged["org.label-schema.build-date"] = build_date(when)
    merged["org.label-schema.usage.apptainer.version"] = version
    if has_help:
        merged["org.label-schema.usage"] = "/.singularity.d/runscript.help"
        merged["org.label-schema.usage.apptainer.runscript.help"] = "/.singularity.d/runscript.help"
    if bootstrapped:
        for key, value in (header or {}).items():
            merged[f"org.label-schema.usage.singularity.deffile.{key}"] = value
    merged.update(auto_labels or {})
    arch, _, variant = (arch or go_arch()).partition("/")  # --arch arm64/v8
    merged["org.opencontainers.image.architecture"] = arch
    merged["org.label-schema.build-arch"] = arch
    if variant:
        merged["org.opencontainers.image.variant"] = variant
    for key, value in labels.items():
        if key in merged and not force:
            log.warning("label %s already exists and will not be overwritten (use --force)", key)
            continue
        merged[key] = value
    text = marshal_indent(merged, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, text, 0o644)
    return merged

