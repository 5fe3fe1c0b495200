"""The build cache: content-addressed checkpoints of each stage, local and shared.

- ``keys``: the inputs of a checkpoint and its key (``key_of``), base identities, content
  digests of host files;
- ``store``: the local store under ``<cache root>/build`` (``CheckpointStore``): verified
  squashfs blobs with index records, a lock per key, LRU eviction under a size cap;
- ``explain``: which input changed since a stage's last build;
- ``remote``: checkpoints in an OCI registry (``--cache-from`` / ``--cache-to``).

The pipeline's use of them is ``builder.steps.checkpoint``; ``sbuild cache list/clean`` is
``builder.commands.cache``. This package imports ``base``, ``builder.images`` and (for the
registry) ``builder.sources.oci``, never the steps or the commands.
"""

from builder.cache.explain import changes, describe
from builder.cache.keys import base_identity, content_digest, key_of, referenced_args
from builder.cache.remote import RemoteCache
from builder.cache.store import DEFAULT_CAP, STORE_DIR, CheckpointStore, Cleaned, Entry, parse_size

__all__ = ["changes", "describe", "base_identity", "content_digest", "key_of", "referenced_args",
           "RemoteCache", "DEFAULT_CAP", "STORE_DIR", "CheckpointStore", "Cleaned", "Entry", "parse_size"]
