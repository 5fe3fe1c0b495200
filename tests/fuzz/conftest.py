"""The fuzzers' fixed CI budget: derandomized (the same examples every run, so a failure
reproduces and CI time is stable), no deadline (a busy 2-core host), and the example
count per target from ``SBUILD_FUZZ_EXAMPLES`` (default 120; ``bench/fuzz_long.py`` runs
the same targets with thousands)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("sbuild-fuzz-ci", derandomize=True, deadline=None, database=None,
                          max_examples=int(os.environ.get("SBUILD_FUZZ_EXAMPLES", "120")),
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.filter_too_much])
