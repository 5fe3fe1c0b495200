"""Fixtures of the reliability scenarios (issue 9): the registry tests' servers and images
(``tests/registry/conftest.py``, loaded under another name so both directories can use them),
the hostile layer runner on ``sys.path``, and helpers shared by the scenario files.

Every scenario test carries ``@pytest.mark.scenario(CLASS)``; ``tests/reliability/report.py``
counts them by class into docs/RELIABILITY.md.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "registry"))
sys.path.append(str(ROOT / "tests" / "library"))  # (libservers: the fake library of the token scenarios)

_spec = importlib.util.spec_from_file_location("sbuild_reliability_registry_fixtures",
                                               ROOT / "tests" / "registry" / "conftest.py")
_registry = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _registry
_spec.loader.exec_module(_registry)
layout, registry, basic_registry, proxy = (_registry.layout, _registry.registry, _registry.basic_registry,
                                           _registry.proxy)


@pytest.fixture
def shared_dir(unprivileged_user):
    """A fresh directory under /tmp that the unprivileged user owns (removed after the test)."""
    from base.fsutil import remove_tree

    d = Path(tempfile.mkdtemp(prefix="sbuild-rel-", dir="/tmp"))
    d.chmod(0o755)
    os.chown(d, unprivileged_user.uid, unprivileged_user.gid)
    try:
        yield d
    finally:
        remove_tree(d)
