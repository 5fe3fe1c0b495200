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
