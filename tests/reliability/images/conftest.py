"""The runtime tests' profiles (root and the unprivileged user), their small busybox images and
their leak check (no mount, loop device or marked process left after a test), loaded from
``tests/runtime/conftest.py`` under another name for the hostile-image scenarios."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "runtime" / "conftest.py"
_spec = importlib.util.spec_from_file_location("sbuild_reliability_runtime_fixtures", _path)
_rt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _rt
_spec.loader.exec_module(_rt)
_profiles, profile, images, workdir, leaks = _rt._profiles, _rt.profile, _rt.images, _rt.workdir, _rt.leaks
