"""sbuild's bundled overlay runtime (user and mount namespaces, overlayfs, actions).

Filled by the runtime issue.
"""

__all__: list[str] = []
