"""Each fuzz target of ``targets.FUZZERS`` under the fixed CI budget (see conftest.py):
only sbuild's own error types escape the recipe parser, the SIF and squashfs readers, the
image reference parser and the layer applier; the layer applier also leaves its canary alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

import targets

pytestmark = [pytest.mark.scenario("fuzzing"), pytest.mark.slow]


@pytest.mark.parametrize("name", sorted(targets.FUZZERS))
def test_only_sbuild_errors_escape(name):
    strategy, check = targets.FUZZERS[name]

    @settings(settings.get_profile("sbuild-fuzz-ci"))
    @given(strategy())
    def run(data):
        check(data)

    run()


_ROOTLESS_RUN = """
import sys
sys.path.insert(0, {fuzz!r})
from hypothesis import HealthCheck, given, settings
import targets
strategy, check = targets.FUZZERS["layer applier"]

@settings(derandomize=True, deadline=None, database=None, max_examples={n},
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(strategy())
def run(data):
    check(data)

run()
print("held")
"""


def test_only_sbuild_errors_escape_the_layer_applier_rootless(unprivileged_user):
    """The layer applier's target again as the unprivileged user (its rootless path: no chown,
    owners in xattrs, devices as empty files, modes set last); the other targets only parse
    bytes, the same whoever runs them."""
    import os
    import tempfile
    from pathlib import Path

    from base.fsutil import remove_tree

    root = Path(__file__).resolve().parents[2]
    work = Path(tempfile.mkdtemp(prefix="sbuild-fuzz-rootless-", dir="/tmp"))
    try:
        unprivileged_user.chown(work)
        n = int(os.environ.get("SBUILD_FUZZ_EXAMPLES", "120"))
        r = unprivileged_user.run(root / ".venv" / "bin" / "python", "-c",
                                  _ROOTLESS_RUN.format(fuzz=str(root / "tests" / "fuzz"), n=n), cwd=str(work),
                                  env={"TMPDIR": str(work), "HOME": str(work)}, timeout=600)
        assert r.returncode == 0 and r.stdout.strip().endswith("held"), (r.stdout[-2000:], r.stderr[-3000:])
        assert os.listdir(work) == [] or all(p.startswith(".") for p in os.listdir(work)), os.listdir(work)
    finally:
        remove_tree(work)
