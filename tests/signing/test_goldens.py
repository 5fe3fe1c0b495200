"""The SIF library's golden signed images give the results the reference's table expects
(shared/reference/sif-signing.md §6), with each golden key, through `apptainer verify`."""

from __future__ import annotations

import json
import re

import pytest

from tests.signing.conftest import PGP_FPR

FAIL = "FATAL:   Failed to verify container: integrity: "
DSSE_BAD = "dsse: verify envelope failed: Accepted signatures do not match threshold, Found: 0, Expected 1"


def _ids(out: str) -> list[list[int]]:
    """The object IDs of each 'Objects verified' table, in order."""
    blocks = out.split("Objects verified:")[1:]
    return [[int(m) for m in re.findall(r"^(\d+)\s*\|", b, re.M)] for b in blocks]


@pytest.mark.parametrize("key", ["ed25519", "rsa"])
@pytest.mark.parametrize("image,tables", [("one-group-signed-dsse", [[1, 2]]),
                                          ("two-groups-signed-dsse", [[1, 2], [3]])])
def test_dsse_goldens_verify_with_each_signing_key(cli, images, keys, keysdir, key, image, tables):
    r = cli("verify", "--key", keys / f"{key}-public.pem", images / f"{image}.sif")
    assert r.status == 0, r
    assert _ids(r.out) == tables
    assert f"INFO:    Verifying image with key material from '{keys / f'{key}-public.pem'}'" in r.err
    assert f"INFO:    Verified signature(s) from image '{images / f'{image}.sif'}'" in r.err


@pytest.mark.parametrize("image,sig", [("one-group-signed-dsse", 3), ("two-groups-signed-dsse", 4)])
def test_dsse_goldens_refuse_the_ecdsa_key_that_signed_nothing(cli, images, keys, keysdir, image, sig):
    r = cli("verify", "--key", keys / "ecdsa-public.pem", images / f"{image}.sif")
    assert r.status == 255
    assert f"{FAIL}signature object {sig} not valid: {DSSE_BAD}" in r.err
    assert f"Error encountered during signature verification: signature object {sig} not valid" in r.out


def test_dsse_object_task(cli, images, keys, keysdir):
    r = cli("verify", "--key", keys / "rsa-public.pem", "-i", "3", images / "two-groups-signed-dsse.sif")
    assert r.status == 0, r
    assert _ids(r.out) == [[3]]


def test_dsse_golden_without_key_material(cli, images, keysdir):
    r = cli("verify", images / "one-group-signed-dsse.sif")
    assert r.status == 255
    assert "INFO:    Verifying image with PGP key material" in r.err
    assert f"{FAIL}key material not provided for DSSE envelope signature" in r.err
    assert r.out == ""


@pytest.mark.parametrize("image,tables", [("one-group-signed-pgp", [[1, 2]]),
                                          ("two-groups-signed-pgp", [[1, 2], [3]])])
def test_pgp_goldens_verify_with_the_local_keyring(cli, images, pgpring, image, tables):
    r = cli("verify", images / f"{image}.sif")
    assert r.status == 0, r
    assert _ids(r.out) == tables
    assert r.out.startswith("[LOCAL]            Signing entity: Unit Test <unit@test.com>\n"
                            f"[LOCAL]            Fingerprint: {PGP_FPR}\n"
                            "Objects verified:\nID  |GROUP   |LINK    |TYPE\n" + "-" * 48 + "\n"
                            "1   |1       |NONE    |FS\n2   |1       |NONE    |FS\n")


def test_pgp_golden_json(cli, images, pgpring):
    r = cli("verify", "--json", images / "one-group-signed-pgp.sif")
    assert r.status == 0, r
    doc = json.loads(r.out)
    assert doc["Signatures"] == 1
    assert [e["Signer"] for e in doc["SignerKeys"]] == [
        {"Partition": "FS", "Name": "Unit Test <unit@test.com>", "Fingerprint": PGP_FPR.lower(),
         "KeyLocal": True, "KeyCheck": True, "DataCheck": True}] * 2
    assert "\\u003cunit@test.com\\u003e" in r.out  # Go's encoder escapes < and >


def test_pgp_golden_with_an_empty_keyring(cli, images, keysdir):
    r = cli("verify", images / "one-group-signed-pgp.sif")
    assert r.status == 255
    assert f"{FAIL}signature object 3 not valid: openpgp: signature made by unknown entity" in r.err


def test_pgp_golden_with_a_pem_key(cli, images, keys, keysdir):
    r = cli("verify", "--key", keys / "rsa-public.pem", images / "one-group-signed-pgp.sif")
    assert r.status == 255
    assert f"{FAIL}key material not provided for PGP clear-sign signature" in r.err


def test_json_of_a_failure_is_still_printed(cli, images, keysdir):
    r = cli("verify", "-j", images / "one-group-signed-pgp.sif")
    assert r.status == 255
    assert json.loads(r.out) == {"Signatures": 1, "SignerKeys": None}


LEGACY = [
    ("one-group-signed-legacy", [], [[2]], None),
    ("one-group-signed-legacy", ["-a"], [], "signature not found for object 1"),
    ("one-group-signed-legacy-group", [], [], "signature not found for object 2"),
    ("one-group-signed-legacy-group", ["-g", "1"], [[1, 2]], None),
    ("one-group-signed-legacy-all", [], [[2]], None),
    ("one-group-signed-legacy-all", ["-a"], [[1], [2]], None),
    ("two-groups-signed-legacy", [], [[2]], None),
    ("two-groups-signed-legacy", ["-a"], [], "signature not found for object 1"),
    ("two-groups-signed-legacy-group", ["-g", "1"], [[1, 2]], None),
    ("two-groups-signed-legacy-group", [], [], "signature not found for object 2"),
    ("two-groups-signed-legacy-all", [], [[2]], None),
    ("two-groups-signed-legacy-all", ["-a"], [[1], [2]], "signature not found for object 3"),
]


@pytest.mark.parametrize("image,flags,tables,error", LEGACY)
def test_legacy_goldens_with_legacy_insecure(cli, images, pgpring, image, flags, tables, error):
    r = cli("verify", "--legacy-insecure", *flags, images / f"{image}.sif")
    assert _ids(r.out) == tables
    if error is None:
        assert r.status == 0, r
    else:
        assert r.status == 255
        assert f"{FAIL}{error}" in r.err


@pytest.mark.parametrize("image", ["one-group-signed-legacy", "one-group-signed-legacy-group",
                                   "one-group-signed-legacy-all", "two-groups-signed-legacy",
                                   "two-groups-signed-legacy-group", "two-groups-signed-legacy-all",
                                   "one-group", "two-groups", "one-object-sbom", "one-object-time"])
def test_legacy_and_unsigned_images_fail_a_plain_verify(cli, images, pgpring, image):
    r = cli("verify", images / f"{image}.sif")
    assert r.status == 255
    assert f"{FAIL}signature not found for object group 1" in r.err


@pytest.mark.parametrize("image", ["empty", "empty-id", "empty-launch-script"])
def test_empty_images_have_no_groups(cli, images, keysdir, image):
    r = cli("verify", images / f"{image}.sif")
    assert r.status == 255
    assert f"{FAIL}no groups found" in r.err


def test_unknown_group_and_object(cli, images, keys, keysdir):
    key = keys / "rsa-public.pem"
    r = cli("verify", "--key", key, "-g", "7", images / "two-groups-signed-dsse.sif")
    assert r.status == 255 and f"{FAIL}group not found" in r.err
    r = cli("verify", "--key", key, "-i", "9", images / "two-groups-signed-dsse.sif")
    assert r.status == 255 and f"{FAIL}object not found" in r.err


def test_sbuild_name_reports_its_own_way(cli, images, keys, keysdir):
    r = cli("verify", "--key", keys / "ecdsa-public.pem", images / "one-group-signed-dsse.sif", prog="sbuild")
    assert r.status == 1
    assert "sbuild: error: Failed to verify container: integrity: signature object 3 not valid" in r.err
