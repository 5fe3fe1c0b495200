"""sbuild's bundled overlay runtime (user, mount and PID namespaces, overlayfs, actions).

Public API:
    run_in_sandbox(rootfs, argv, *, writable, binds, env, cleanenv, cwd, build_config,
                   stdin, stdout, stderr, userns, action) -> int     (runtime.api)
    Bind(src, dst, readonly)                                       (runtime.spec)
    RunOptions / run_action(image, action, args, opts) -> int       (runtime.session)

Attributes are imported on first use so that ``import runtime`` stays cheap.
"""

from __future__ import annotations

__all__ = ["run_in_sandbox", "Bind", "RunOptions", "run_action"]

_WHERE = {"run_in_sandbox": "runtime.api", "Bind": "runtime.spec", "RunOptions": "runtime.session",
          "run_action": "runtime.session"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
