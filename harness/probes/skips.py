"""Probes not worth launching: every row the probe reports on is about a model class the revision lacks.

The static scan knows which model classes a revision defines (:data:`harness.introspect.MODEL_CLASS_PATHS`):
a row on a class whose module is absent is ``missing`` with that module among its checks (``hybrid:llama``
before megatron-core 0.18 lacks ``module:megatron.core.models.hybrid.hybrid_model``). A probe of such a row
can only fail importing the class the bridge builds it from, so the sweep records it as ``skipped`` with
the reason instead of spending a subprocess (about a minute of imports on a loaded 2-core box) on it.

Only an absent model class counts. A row ``missing`` for any other reason (a config field, a layer-spec
function, a ``GPTModel`` parameter) is still probed: the static requirements can be too strict, and a probe
that passes where the static verdict says ``missing`` is the disagreement the matrix exists to show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from harness.introspect import MODEL_CLASS_PATHS, MODEL_CLASSES
from harness.matrix import Matrix
from harness.probes.fold import rows_for_test
from harness.probes.runner import ProbeResult, test_name
from harness.render.model_classes import row_model_class

__all__ = ["NOT_LAUNCHED", "absent_model_class", "comparison_skips", "not_launched_result", "static_skips"]

NOT_LAUNCHED = "static scan"
"""``meta["not_launched"]`` of a result the sweep made up from the static scan instead of running the probe."""


def _class_module_check(class_name: str) -> str:
    return "module:" + MODEL_CLASS_PATHS[class_name].removesuffix(".py").replace("/", ".")


def absent_model_class(matrix: Matrix, row: str, spec: str) -> str | None:
    """The model class (``HybridModel``) ``row`` is about when the static scan of ``spec`` lacks its module."""
    entry = next((r for r in matrix.rows if r["name"] == row), None)
    cell = matrix.cell(row, spec)
    model_class = row_model_class(entry) if entry else None
    if model_class not in MODEL_CLASSES or cell is None or cell.get("status") != "missing":
        return None
    name = MODEL_CLASSES[model_class]
    return name if _class_module_check(name) in (cell.get("missing") or ()) else None


def static_skips(matrix: Matrix, specs: Iterable[str], tests: Iterable[object]) -> dict[tuple[str, str], str]:
    """``{(spec, test): reason}`` of the probes whose every row's model class is absent at ``spec`` (static scan).

    ``specs`` are the matrix's revision specs (the sweep's canonical ones); a revision or row the matrix lacks
    is never skipped.
    """
    out: dict[tuple[str, str], str] = {}
    names = [test_name(t) for t in tests]
    for spec in specs:
        for name in names:
            rows = rows_for_test(name)
            classes = [absent_model_class(matrix, row, spec) for row in rows]
            if rows and all(classes):
                found = sorted(set(c for c in classes if c))
                modules = ", ".join(MODEL_CLASS_PATHS[c] for c in found)
                out[(spec, name)] = (f"not run: {' and '.join(found)} is absent at this revision "
                                     f"(static scan: no {modules})")
    return out


def comparison_skips(matrix: Matrix, baseline: str, target: str, tests: Iterable[object]
                     ) -> dict[tuple[str, str], str]:
    """:func:`static_skips` for ``mcore-compat run``: the baseline's, and the target's only where the baseline
    skips the same probe. A target that lost a class the baseline has still runs its probes, so a row that
    passed at the baseline shows as a dynamic break at the target (a skipped probe is never a break)."""
    names = [test_name(t) for t in tests]
    skips = static_skips(matrix, [baseline, target], names)
    return {(spec, name): why for (spec, name), why in skips.items()
            if spec == baseline or (baseline, name) in skips}


def not_launched_result(spec: str, test: str, reason: str, *, device: str, version: str | None,
                        rows: Sequence[str] | None = None) -> ProbeResult:
    """The ``skipped`` result of a probe :func:`static_skips` kept from running (each row says why)."""
    rows = rows_for_test(test) if rows is None else rows
    return ProbeResult(spec, test, "skipped", rows={r: {"status": "skipped", "details": reason} for r in rows},
                       details=reason, meta={"device": device, "mcore_version": version, "not_launched": NOT_LAUNCHED})
