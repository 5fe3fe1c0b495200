"""sbuild's base layer: what the builder and the runtime both stand on.

``errors`` (the exception tree every part raises), ``records`` (frozen value records),
``securejoin`` (path resolution that never leaves a root), ``cachedir`` (where the cache
lives), ``env`` (``$APPTAINER_``/``$SINGULARITY_`` settings), ``gojson`` (JSON as Go's
``encoding/json`` writes it), ``fsutil`` (removing a tree whatever its modes), ``owner``
(temporary directories whose owner's death shows, for reclaiming leftovers), ``retry``
(the HTTP clients' back-off policy), ``squashfs`` (the one extractor), ``sitepackages``
(third-party packages when Python started without ``site``), ``lean_os`` (the part of ``os``
the launch uses, without importing ``os``), ``importcache`` (the launch's modules from one
file). Modules here import only the standard library and
each other, never ``builder``, ``runtime`` or ``grammar`` (``tests/test_layers.py``
enforces it), and each is cheap to import: the runtime loads them on its launch path.
"""

__all__: list[str] = []
