"""Dynamic probes: run the bridge against MCore revisions in subprocesses, fold the results into the matrix.

``envs`` prepares a revision (its sources first on ``PYTHONPATH``), ``runner`` runs one probe test in a
subprocess (``python -m harness.probes.payload``), ``cachekeys`` caches results, ``sweep`` runs many
(resumable, concurrent), ``fold`` adds them to a :class:`harness.matrix.Matrix` next to the static
verdicts, with known disagreements explained in ``explanations``.

Names are imported lazily: the probe subprocess imports this package under a revision's MCore and
must not pay for (or be disturbed by) the harness side.
"""

from __future__ import annotations

from bridge.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "EXPLANATIONS": "harness.probes.explanations",
    "Explanation": "harness.probes.explanations",
    "PreparedRevision": "harness.probes.prepared",
    "ProbeCache": "harness.probes.cachekeys",
    "ProbeTest": "harness.probes.catalog",
    "ProbeResult": "harness.probes.runner",
    "SweepReport": "harness.probes.sweep",
    "TESTS": "harness.probes.catalog",
    "fold_results": "harness.probes.fold",
    "prepare_revision": "harness.probes.envs",
    "run_probe": "harness.probes.runner",
    "run_sweep": "harness.probes.sweep",
    "run_sweep_report": "harness.probes.sweep",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports("harness.probes", _EXPORTS, __all__)
