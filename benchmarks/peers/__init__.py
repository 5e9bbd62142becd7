"""Shared parts of the gateway peer benchmark and the RSS soak (``benchmarks/*_bench.py``).

``gateway_peers_bench.py`` and ``soak_bench.py`` both need the same fake upstream (nginx), the
same corral-with-all-governance stack and the same way of starting pinned processes; they live
here so the two scripts share them instead of copying them. Nothing in here is imported by
corral itself: these are benchmark helpers, run from ``benchmarks/`` (which puts this package
on ``sys.path``).
"""
