"""SIF layout against the Go SIF library's golden files: byte-for-byte writer and round trip."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

from builder.images import sif

GOLDEN = "sif/pkg/sif/testdata/TestCreateContainer"

# The inputs of TestCreateContainer (conformance/sif/SOURCE.md).
_GENERIC = sif.SifObject(sif.DATA_GENERIC, b"\xfa\xce")


def _part(align: int | None) -> sif.SifObject:
    return sif.SifObject(sif.DATA_PARTITION, b"\xfe\xed", align=align, fstype=sif.FS_SQUASH,
                         parttype=sif.PART_PRIMSYS, arch="386")


CASES = {
    "Empty": ([], {}),
    "EmptyCloseOnUnload": ([], {}),
    "EmptyLaunchScript": ([], {"launch": b"#!/usr/bin/env launch-script\n"}),
    "EmptyWithID": ([], {"uuid": uuid.UUID("de170c43-36ab-44a8-bca9-1ea1a070a274").bytes}),
    "EmptyWithTime": ([], {"time": 946702800}),
    "EmptyDescriptorLimitedCapacity": ([], {"capacity": 1}),
    "OneDescriptor": ([_GENERIC], {}),
    "TwoDescriptors": ([_GENERIC, _part(None)], {}),
    "TwoDescriptorsNotAligned": ([sif.SifObject(sif.DATA_GENERIC, b"\xfa\xce", align=0), _part(0)], {}),
    "TwoDescriptorsAligned": ([sif.SifObject(sif.DATA_GENERIC, b"\xfa\xce", align=4), _part(4)], {}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_writer_matches_golden(conformance: Path, name: str) -> None:
    golden = conformance / GOLDEN / f"{name}.golden"
    objects, opts = CASES[name]
    opts = {"launch": b"", **opts}  # the Go library's default launch script is empty
    assert sif.sif_bytes(objects, sif.SifCreateOptions(**opts)) == golden.read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_reader_round_trips_golden(conformance: Path, name: str) -> None:
    """Read a golden, rebuild it from what the reader reports, get the same bytes."""
    data = (conformance / GOLDEN / f"{name}.golden").read_bytes()
    layout = sif.read_sif(io.BytesIO(data))
    h = layout.header
    objects = []
    end = h.data_offset
    for d in layout.descriptors:
        pad = d.offset - end
        objects.append(sif.SifObject(d.data_type, data[d.offset:d.offset + d.size], name=d.name,
                                     align=(d.offset if pad else 0) and _align_for(end, d.offset),
                                     group=d.group_id & ~sif.GROUP_MASK, link=d.link,
                                     fstype=d.fstype or 0, parttype=d.parttype or 0,
                                     arch=sif.arch_name(d.arch) if d.arch else "",
                                     extra=d.extra))
        end = d.offset + d.size
    opts = sif.SifCreateOptions(launch=h.launch, uuid=h.uuid, time=h.created,
                                capacity=h.descr_total, descr_offset=h.descr_offset)
    assert sif.sif_bytes(objects, opts) == data


def _align_for(start: int, offset: int) -> int:
    """The largest power of two (<= 4096) that puts an object starting after ``start`` at ``offset``."""
    for a in (4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2):
        if offset % a == 0 and offset - start < a:
            return a
    return 0


def test_golden_fields(conformance: Path) -> None:
    layout = sif.read_sif(io.BytesIO((conformance / GOLDEN / "TwoDescriptors.golden").read_bytes()))
    assert layout.header.arch == "01" and layout.header.created == sif.GO_ZERO_TIME
    part = layout.primary_partition()
    assert part is not None and (part.offset, part.size, part.arch) == (32768, 2, "01")
    assert (part.group_id, part.id) == (0xF0000001, 2)
