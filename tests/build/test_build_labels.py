"""labels.json keys that depend on build flags (spec §B.7)."""

from __future__ import annotations

import json
from pathlib import Path

from builder.steps.labels import write_labels


def _write(rootfs: Path, **kw) -> dict[str, str]:
    (rootfs / ".singularity.d").mkdir(parents=True, exist_ok=True)
    args = dict(labels={}, header=None, has_help=False, bootstrapped=False, force=False,
                source_date_epoch=0, arch=None, version="test")
    args.update(kw)
    write_labels(rootfs, **args)
    return json.loads((rootfs / ".singularity.d" / "labels.json").read_text())


def test_arch_with_variant_gives_architecture_and_variant_labels(tmp_path):
    labels = _write(tmp_path, arch="arm64/v8")
    assert labels["org.opencontainers.image.architecture"] == "arm64"
    assert labels["org.label-schema.build-arch"] == "arm64"
    assert labels["org.opencontainers.image.variant"] == "v8"


def test_no_variant_label_without_one(tmp_path):
    labels = _write(tmp_path, arch="amd64")
    assert labels["org.opencontainers.image.architecture"] == "amd64"
    assert "org.opencontainers.image.variant" not in labels


def test_docker_login_without_a_terminal_is_a_usage_error(sbuild, tmp_path):
    recipe = tmp_path / "r.def"
    recipe.write_text("Bootstrap: docker\nFrom: 127.0.0.1:1/none:1\n")
    r = sbuild("build", "--docker-login", recipe, tmp_path / "out.sif")
    assert r.status == 2 and "terminal" in r.err
    assert not (tmp_path / "out.sif").exists()
