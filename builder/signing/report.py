"""``sbuild inspect --signatures``: who signed a SIF, per signature object (the format, the
group or object it covers, the PGP fingerprint and the local keyring's name for it, or the
DSSE key IDs). It reads the descriptors only: whether the signatures hold is ``verify``'s job.
"""

from __future__ import annotations

import sys

from builder.signing.fingerprints import is_sif, signers

__all__ = ["print_signers", "describe"]


def describe(path: str) -> list[dict]:
    """``fingerprints.signers`` with ``signer``: the local/global keyring's user ID, or ""."""
    entries = signers(path) if is_sif(path) else []
    names: dict[str, str] = {}
    if any(e["fingerprint"] for e in entries):
        try:
            from builder.signing.keyring import Keyring

            names = {k["fpr"]: (k["uids"] or [""])[0] for k in Keyring().list()}
        except Exception:  # noqa: BLE001 - no gpg or no keyring: fingerprints alone
            names = {}
    for e in entries:
        e["signer"] = names.get(e["fingerprint"], "")
    return entries


def print_signers(path: str, *, as_json: bool = False, out=None) -> int:  # noqa: ANN001
    out = out or sys.stdout
    entries = describe(path)
    if as_json:
        from base.gojson import marshal_indent

        print(marshal_indent({"signatures": entries}), file=out)
        return 0
    if not entries:
        print(f"{path}: no signatures", file=out)
        return 0
    for e in entries:
        who = e["fingerprint"] or ", ".join(e["keyids"]) or "unknown"
        name = f" ({e['signer']})" if e["signer"] else ""
        link = e["link"]
        covers = f"group {link[:-4]}" if link.endswith(" (G)") else f"object {link}"
        print(f"signature {e['id']} [{e['format']}] on {covers}: {who}{name}", file=out)
    return 0
