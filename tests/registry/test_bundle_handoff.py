"""An OCI base hands its config and base labels to the later steps on the Bundle, not in files."""

from __future__ import annotations

import json

from builder.images import probe


def test_an_oci_base_reaches_the_sif_and_labels_without_scratch_files(sbuild, layout, tmp_path, monkeypatch):
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    path = tmp_path / "oci.def"
    path.write_text(f"Bootstrap: oci\nFrom: {layout}:1.0\n")
    target = tmp_path / "out.sif"
    r = sbuild("build", "--no-cleanup", "--tmpdir", tmp_path, path, target)
    assert r.status == 0, r.err
    bundles = list(tmp_path.glob("sbuild-bundle-*"))
    assert len(bundles) == 1 and (bundles[0] / "rootfs").is_dir()
    assert sorted(p.name for p in bundles[0].iterdir() if p.is_file()) == []  # nothing beside the rootfs
    info = probe(target)
    assert [d.name for d in info.descriptors if d.name] == ["inspect-metadata.json", "oci-config.json"]
    config = next(d for d in info.descriptors if d.name == "oci-config.json")
    with open(target, "rb") as fh:
        fh.seek(config.offset)
        assert "Env" in json.loads(fh.read(config.size))
    r = sbuild("inspect", "--labels", "--json", target)
    labels = json.loads(r.out)
    labels = labels["data"]["attributes"]["labels"] if "data" in labels else labels
    assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")
