"""sbuild's benchmarks, each against the real alternative in the same run (STYLE.md 20).

``python -m bench [--quick]`` runs them all (``bench.harness`` finds every module here that
has ``run(quick) -> list[dict]``) and writes ``bench/results.json`` and
``docs/PERFORMANCE.md``; each module also runs alone as a script with its own options.
"""

__all__: list[str] = []
