"""Agreement between a cell's static verdict and its dynamic probe results.

A static ``supported`` / ``renamed`` predicts that the probes pass; ``missing`` predicts anything
else. A ``partial`` family (some variants run) predicts that exactly the variants it lists as not
running fail: where the probes recorded each variant (``dyn["variants"]``), the two sets must be equal
(both ``partial``, but a different variant failing, is a disagreement); without that record, anything
but a pass agrees, as for ``missing``. Static ``error`` / ``unchecked`` and a dynamic ``skipped`` are
not compared (no agreement).
Disagreements listed in :mod:`harness.probes.explanations` are ``explained``.

Per platform (``cell["dynamic"][platform]["agreement"]``) and per cell (``cell["agreement"]``, the
most alarming of its platforms). Both :mod:`harness.matrix` (merging re-judges every cell) and
:mod:`harness.probes.fold` (folding probe results in) use this module; neither imports the other
for it.
"""

from __future__ import annotations

from typing import Any

from harness.probes.explanations import WORKS, explain

__all__ = ["AGREEMENTS", "NOT_COMPARED", "UNCHECKED", "blocked_variants", "failed_variants", "platform_agreement",
           "reassess_cell", "settle_agreement"]

UNCHECKED = "unchecked"
"""Static status of a cell that only the dynamic probes report."""

AGREEMENTS = ("agree", "explained", "disagree")
"""Static vs dynamic, least to most alarming; a cell shows the most alarming of its platforms."""

NOT_COMPARED = ("error", UNCHECKED)
"""Static statuses that predict nothing."""


def blocked_variants(variants: dict[str, Any] | None) -> frozenset[str]:
    """The variants a ``partial`` verdict says do not run, by the name the probes record (``v2(rope)`` -> ``v2``)."""
    return frozenset(name.split("(")[0] for name, v in (variants or {}).items() if v.get("status") not in WORKS)


def failed_variants(dyn: dict[str, Any]) -> frozenset[str] | None:
    """The variants the probes found failing (None: the result has no per-variant record)."""
    record = dyn.get("variants")
    return frozenset(name for name, status in record.items() if status != "passed") if record else None


def _predicted(static: str, dyn: dict[str, Any], variants: dict[str, Any] | None) -> bool:
    """Whether the probe result is what the static verdict predicts."""
    failed = failed_variants(dyn) if static == "partial" and variants else None
    if failed is not None:
        return failed == blocked_variants(variants)
    return (static in WORKS) == (dyn["status"] == "passed")


def platform_agreement(row: str, rev: dict[str, Any], static: str, dyn: dict[str, Any], platform: str,
                       variants: dict[str, Any] | None = None) -> tuple[str | None, str | None]:
    """``(agreement, explanation)`` of one platform's probe result ``dyn`` with the static status ``static``
    (``variants``: a ``partial`` cell's per-variant verdicts)."""
    status = dyn["status"]
    if static in NOT_COMPARED or status == "skipped":
        return None, None
    if _predicted(static, dyn, variants):
        return "agree", None
    found = explain(row=row, version=rev.get("version"), static=static, dynamic=status, platform=platform,
                    details=dyn["details"], outside_python_range=bool(dyn.get("outside_python_range")))
    return ("explained", found.reason) if found else ("disagree", None)


def settle_agreement(cell: dict[str, Any]) -> None:
    """Set ``cell["agreement"]`` / ``cell["explanation"]`` from its platforms' (removed when none compared)."""
    cell.pop("agreement", None)
    cell.pop("explanation", None)
    per = [(p, d) for p, d in sorted((cell.get("dynamic") or {}).items()) if d.get("agreement") in AGREEMENTS]
    if not per:
        return
    worst = max((d["agreement"] for _, d in per), key=AGREEMENTS.index)
    cell["agreement"] = worst
    if worst == "explained":
        reasons = dict.fromkeys(d["explanation"] for _, d in per if d.get("explanation"))
        cell["explanation"] = "; ".join(reasons)


def reassess_cell(row: str, rev: dict[str, Any], cell: dict[str, Any]) -> None:
    """Recompute every platform's agreement against the cell's (possibly new) static verdict, then the cell's."""
    for platform, dyn in (cell.get("dynamic") or {}).items():
        if "status" not in dyn:
            continue
        agreement, explanation = platform_agreement(row, rev, cell["status"], dyn, platform, cell.get("variants"))
        dyn["agreement"] = agreement
        dyn.pop("explanation", None)
        if explanation:
            dyn["explanation"] = explanation
    settle_agreement(cell)
