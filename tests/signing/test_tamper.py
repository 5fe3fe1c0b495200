"""One byte flipped in what a signature covers fails verification and names what changed;
bytes outside it (header times, padding) do not (reference §6, tamper recipes)."""

from __future__ import annotations

from pathlib import Path

import pytest

FAIL = "FATAL:   Failed to verify container: integrity: "


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ mask]))


def _verify(cli, fmt: str, path: Path, keys: Path):
    if fmt == "dsse":
        return cli("verify", "--key", keys / "ed25519-public.pem", path)
    return cli("verify", path)


CASES = [
    (36864 + 100, 1, "data object integrity compromised: 2", [[1]]),
    (32768, 1, "data object integrity compromised: 1", []),
    (4096 + 73, 1, "data object descriptor integrity compromised: 1", []),
    (4096 + 18, 1, "data object integrity compromised: 1", []),
    (0, 0x23, "header integrity compromised", []),
    (4096 + 1371, 1, "hash algorithm unsupported", []),
]


@pytest.mark.parametrize("fmt", ["dsse", "pgp"])
@pytest.mark.parametrize("offset,mask,error,tables", CASES)
def test_a_flipped_covered_byte_fails_and_says_what(cli, images, keys, pgpring, copy, fmt, offset, mask, error,
                                                    tables):
    path = copy(images / f"one-group-signed-{fmt}.sif")
    _flip(path, offset, mask)
    r = _verify(cli, fmt, path, keys)
    assert r.status == 255, r
    assert f"{FAIL}{error}" in r.err
    assert [b.count("|FS") for b in r.out.split("Objects verified:")[1:]] == [len(t) for t in tables]


@pytest.mark.parametrize("fmt", ["dsse", "pgp"])
@pytest.mark.parametrize("offset", [72, 33000])
def test_uncovered_bytes_change_nothing(cli, images, keys, pgpring, copy, fmt, offset):
    path = copy(images / f"one-group-signed-{fmt}.sif")
    _flip(path, offset)
    assert _verify(cli, fmt, path, keys).status == 0


def test_a_changed_signature_text(cli, images, keys, pgpring, copy):
    pgp = copy(images / "one-group-signed-pgp.sif")
    _flip(pgp, 40960 + 200)
    r = cli("verify", pgp)
    assert r.status == 255 and f"{FAIL}signature object 3 not valid: openpgp: invalid signature" in r.err
    dsse = copy(images / "one-group-signed-dsse.sif")
    _flip(dsse, 40960 + 200)
    r = cli("verify", "--key", keys / "ed25519-public.pem", dsse)
    assert r.status == 255 and "signature object 3 not valid: dsse: verify envelope failed" in r.err


def test_a_changed_fingerprint_fails_pgp_only(cli, images, keys, pgpring, copy):
    pgp = copy(images / "one-group-signed-pgp.sif")
    _flip(pgp, 4096 + 1375)
    r = cli("verify", pgp)
    assert r.status == 255
    assert f"{FAIL}fingerprint in descriptor does not correspond to signing entity" in r.err
    dsse = copy(images / "one-group-signed-dsse.sif")
    _flip(dsse, 4096 + 1375)
    assert cli("verify", "--key", keys / "ed25519-public.pem", dsse).status == 0


@pytest.mark.parametrize("fmt", ["dsse", "pgp"])
def test_second_group_tampered(cli, images, keys, pgpring, copy, fmt):
    path = copy(images / f"two-groups-signed-{fmt}.sif")
    _flip(path, 45960)
    r = _verify(cli, fmt, path, keys)
    assert r.status == 255 and f"{FAIL}data object integrity compromised: 3" in r.err
    assert r.out.count("Objects verified:") == 1


@pytest.mark.parametrize("fmt", ["dsse", "pgp"])
def test_a_removed_signature(cli, images, keys, pgpring, copy, fmt):
    path = copy(images / f"two-groups-signed-{fmt}.sif")
    _flip(path, 4096 + 4 * 585 + 4)  # descriptor 5's Used byte
    r = _verify(cli, fmt, path, keys)
    assert r.status == 255 and f"{FAIL}signature not found for object group 2" in r.err


def test_the_library_names_the_changed_part(images, copy):
    """IntegrityError.changed says which covered part differs (for messages and builds)."""
    from builder.signing import IntegrityError, SignImage, tasks_for, verify_image
    from builder.signing.dsse import load_public_key

    key = load_public_key(str(images.parent / "keys" / "rsa-public.pem"))
    for offset, changed in ((0, "header"), (4096 + 73, "descriptor 1"), (36864 + 5, "object 2")):
        path = copy(images / "one-group-signed-dsse.sif", f"t{offset}.sif")
        _flip(path, offset, 0x23)
        with SignImage(str(path)) as image, pytest.raises(IntegrityError) as e:
            verify_image(image, tasks_for(image), dsse_keys=[key])
        assert e.value.changed == changed
