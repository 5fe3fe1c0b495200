"""The shared cache: checkpoints in an OCI registry (``--cache-from`` / ``--cache-to``).

``REF`` is a repository, ``docker://HOST/REPO`` or ``oras://HOST/REPO`` (a tag, if given,
is ignored). Each checkpoint is one OCI artifact manifest tagged ``ckpt-<key>``: its config
is the index record (``application/vnd.sbuild.cache.record.v1+json``) and its one layer the
blob (a squashfs of the stage's rootfs, or the packed image for kind ``image``). So:

- a lookup is one ``HEAD /v2/REPO/manifests/ckpt-<key>`` (``has``);
- ``fetch`` downloads the manifest, the record and the blob, verifies both against the
  manifest's digests and stores them in the local store, which verifies again before use;
- ``push`` uploads only the blobs the registry lacks (``HEAD`` first), then the manifest.
  Writers of different keys touch different tags and content-addressed blobs: they never
  conflict; two writers of one key write the same tag with equivalent content.

The registry client, its auth (``--authfile``, ``docker login`` files, ``--docker-login``)
and retries are ``builder.sources.oci``'s. Limits: no cross-repository blob mounts; a
registry that refuses unknown config media types cannot hold the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from base.errors import SbuildError
from builder.cache.store import CheckpointStore, Entry

__all__ = ["RemoteCache", "RECORD_TYPE", "BLOB_TYPE", "tag_for"]

log = logging.getLogger("sbuild.cache")

RECORD_TYPE = "application/vnd.sbuild.cache.record.v1+json"
BLOB_TYPE = "application/vnd.sbuild.cache.squashfs.v1"
IMAGE_TYPE = "application/vnd.sbuild.cache.image.v1"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def tag_for(key: str) -> str:
    return f"ckpt-{key}"


class RemoteCache:
    """One registry repository holding checkpoints; ``options``: the build's FetchOptions."""

    def __init__(self, ref: str, options) -> None:  # noqa: ANN001
        from builder.sources.oci.agent import pull_options
        from builder.sources.oci.puller import registry_client
        from builder.sources.oci.reference import parse_reference

        self.ref = ref
        reference = parse_reference(ref)
        self.repo = reference.repository
        self.client = registry_client(reference, pull_options(options))

    def __str__(self) -> str:
        return self.ref

    def has(self, key: str) -> bool:
        """Whether the registry holds ``key`` (one HEAD; False when it cannot be asked)."""
        try:
            resp = self.client.request("HEAD", f"/v2/{self.repo}/manifests/{tag_for(key)}",
                                       scope=f"repository:{self.repo}:pull", ok=(200, 404),
                                       headers={"Accept": _MANIFEST}, what=f"looking up cache {key[:12]}")
        except SbuildError as e:
            log.warning("cache %s: %s", self.ref, e)
            return False
        return resp.status_code == 200

    def _blob(self, digest: str) -> bytes:
        return b"".join(self.client.blob_chunks(self.repo, digest))

    def fetch(self, key: str, store: CheckpointStore) -> Entry | None:
        """Download ``key`` into ``store`` (the caller holds ``store.building(key)``)."""
        try:
            body, _, _ = self.client.get_manifest(self.repo, tag_for(key))
            manifest = json.loads(body)
            config, layer = manifest["config"], manifest["layers"][0]
            data = self._blob(config["digest"])
            if "sha256:" + hashlib.sha256(data).hexdigest() != config["digest"]:
                raise ValueError("the record does not match its digest")
            record = json.loads(data)
            if record.get("key") != key or record.get("digest") != layer["digest"]:
                raise ValueError("the record names another entry")

            def write(path: Path) -> None:
                with open(path, "wb") as fh:
                    for chunk in self.client.blob_chunks(self.repo, layer["digest"]):
                        fh.write(chunk)

            entry = store.put(key, record, write)
        except (SbuildError, ValueError, KeyError, IndexError, TypeError) as e:
            log.warning("cache %s: fetching %s: %s", self.ref, key[:12], e)
            return None
        if entry.record.get("digest") != layer["digest"]:
            log.warning("cache %s: %s: the blob does not match its digest", self.ref, key[:12])
            return None
        return entry

    def push(self, entry: Entry) -> None:
        """Upload ``entry`` (blobs the registry has are skipped); a failure is a warning."""
        scope = f"repository:{self.repo}:pull,push"
        record = json.dumps(entry.record, sort_keys=True).encode()
        cfg_digest = "sha256:" + hashlib.sha256(record).hexdigest()
        try:
            import tempfile

            with tempfile.NamedTemporaryFile(prefix="sbuild-record-") as tmp:
                tmp.write(record)
                tmp.flush()
                for digest, path in ((cfg_digest, Path(tmp.name)), (entry.record["digest"], entry.blob)):
                    if not self.client.blob_exists(self.repo, digest, scope=scope):
                        self.client.upload_blob(self.repo, digest, path)
            kind = IMAGE_TYPE if entry.kind == "image" else BLOB_TYPE
            manifest = {"schemaVersion": 2, "mediaType": _MANIFEST,
                        "config": {"mediaType": RECORD_TYPE, "digest": cfg_digest, "size": len(record)},
                        "layers": [{"mediaType": kind, "digest": entry.record["digest"], "size": entry.size}],
                        "annotations": {"org.opencontainers.image.title": f"sbuild cache {entry.kind}"}}
            self.client.put_manifest(self.repo, tag_for(entry.key),
                                     json.dumps(manifest, separators=(",", ":")).encode(), _MANIFEST)
        except SbuildError as e:
            log.warning("cache %s: pushing %s: %s", self.ref, entry.key[:12], e)
            return
        log.info("cache: pushed %s %s to %s", entry.kind, entry.key[:12], self.ref)
