"""What both renderers show of the dynamic probes: disagreements, per-revision probe runs, deprecations.

Pure reads of a :class:`harness.matrix.Matrix` (see :mod:`harness.probes.fold` for the keys).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from harness.agreement import AGREEMENTS
from harness.matrix import Matrix
from harness.render.common import column_label, outside_python_range, platforms_in

__all__ = [
    "Disagreement",
    "RevisionProbes",
    "WarningGroup",
    "agreement_counts",
    "deprecations",
    "disagreements",
    "is_deprecation",
    "revision_probes",
]

_TEST_STATUSES = ("passed", "failed", "error", "timeout", "skipped")
_DEPRECATION = re.compile(r"deprecat|will be removed|no longer supported", re.IGNORECASE)


@dataclass(frozen=True)
class Disagreement:
    """A cell whose static and dynamic verdicts differ (``explained`` ones carry the reason)."""

    row: str
    label: str
    spec: str
    static: str
    dynamic: dict[str, str]
    details: str
    agreement: str
    explanation: str | None
    outside_python_range: bool


@dataclass(frozen=True)
class RevisionProbes:
    """One revision on one platform: versions, how its tests ended, timing and the tests that could not judge."""

    label: str
    spec: str
    platform: str
    versions: str
    outside_python_range: bool
    counts: dict[str, int]
    timing: dict[str, Any]
    notes: list[str]
    problems: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class WarningGroup:
    """Deprecation warnings shared by consecutive revisions (on one platform)."""

    labels: list[str]
    platform: str
    warnings: list[dict[str, Any]]


def agreement_counts(matrix: Matrix) -> dict[str, int]:
    counts = dict.fromkeys(AGREEMENTS, 0)
    for cell in matrix.cells.values():
        if cell.get("agreement") in counts:
            counts[cell["agreement"]] += 1
    return counts


def disagreements(matrix: Matrix) -> list[Disagreement]:
    """``disagree`` and ``explained`` cells, in row then revision order."""
    out = []
    for row in matrix.rows:
        for rev in matrix.revisions:
            cell = matrix.cell(row["name"], rev["spec"])
            if not cell or cell.get("agreement") not in ("disagree", "explained"):
                continue
            dyn = cell.get("dynamic") or {}
            details = "; ".join(f"{p}: {d.get('details', '')}" for p, d in sorted(dyn.items())
                                if d.get("agreement") in ("disagree", "explained"))
            out.append(Disagreement(
                row=row["name"], label=column_label(rev), spec=rev["spec"], static=cell["status"],
                dynamic={p: str(d.get("status")) for p, d in sorted(dyn.items())}, details=details,
                agreement=cell["agreement"], explanation=cell.get("explanation"),
                outside_python_range=outside_python_range(rev),
            ))
    return out


def _versions(summary: dict[str, Any]) -> str:
    parts = [f"{name} {summary[key]}" for name, key in (("python", "python"), ("torch", "torch"),
                                                         ("transformers", "transformers"), ("mcore", "mcore_version"))
             if summary.get(key)]
    return ", ".join(parts)


def revision_probes(matrix: Matrix) -> list[RevisionProbes]:
    """Every probed revision, per platform, in revision order."""
    out = []
    for platform in platforms_in(matrix):
        for rev in matrix.revisions:
            summary = (rev.get("dynamic") or {}).get(platform)
            if not summary:
                continue
            tests = summary.get("tests") or {}
            counts = {s: sum(1 for t in tests.values() if t.get("status") == s) for s in _TEST_STATUSES}
            problems = [(name, t["status"], str(t.get("details", ""))) for name, t in tests.items()
                        if t.get("status") in ("error", "timeout")]
            out.append(RevisionProbes(
                label=column_label(rev), spec=rev["spec"], platform=platform, versions=_versions(summary),
                outside_python_range=bool(summary.get("outside_python_range")),
                counts={s: n for s, n in counts.items() if n}, timing=dict(summary.get("timing") or {}),
                notes=list(summary.get("notes") or []), problems=problems,
            ))
    return out


def is_deprecation(warning: dict[str, Any]) -> bool:
    category = str(warning.get("category", ""))
    message = str(warning.get("message", ""))
    return "Deprecat" in category or category == "FutureWarning" or bool(_DEPRECATION.search(message))


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """The same warnings, line numbers aside (they move between releases)."""
    def key(ws: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(str(w.get("category")), str(w.get("message")), str(w.get("filename"))) for w in ws]

    return key(a) == key(b)


def deprecations(matrix: Matrix) -> list[WarningGroup]:
    """Deprecation warnings per revision and platform; consecutive revisions with the same set are grouped."""
    groups: list[WarningGroup] = []
    for platform in platforms_in(matrix):
        for rev in matrix.revisions:
            summary = (rev.get("dynamic") or {}).get(platform)
            if not summary:
                continue
            found = [w for w in summary.get("warnings") or [] if is_deprecation(w)]
            if not found:
                continue
            last = groups[-1] if groups else None
            if last and last.platform == platform and _same(last.warnings, found):
                last.labels.append(column_label(rev))
            else:
                groups.append(WarningGroup([column_label(rev)], platform, found))
    return groups
