"""Judge an upstream commit against the pinned one: what broke, and the run's summary.

``mcore-compat run`` builds one matrix holding two revisions, the *baseline* (the pinned
``3rdparty/Megatron-LM`` commit) and the *target* (the new upstream commit), with static
verdicts and, with the dynamic suite, the probes' results. A family *breaks* when a check
it passed at the baseline does not pass at the target:

- static: its verdict was ``supported`` or ``renamed`` and is now ``missing`` or ``error``;
- dynamic: a probe covering it passed at the baseline and now fails, errors or times out
  (a probe that gates every family, such as ``import``, breaks each of them).

Feature rows that regress are reported too, but do not make the run fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.matrix import Matrix

__all__ = ["Break", "RunReport", "dynamic_breaks", "render_summary", "static_breaks"]

OK_STATIC = ("supported", "renamed")
BAD_DYNAMIC = ("failed", "error", "timeout")
GATING_TESTS = ("import",)
"""Probes every family depends on: when one of them breaks, each family breaks with it."""


class ProbeOutcome(Protocol):
    """What :mod:`harness.probes.runner` returns (the fields read here)."""

    spec: str
    test: str
    status: str
    rows: dict[str, Any]
    details: str


@dataclass(frozen=True)
class Break:
    """One check a row passed at the baseline and fails at the target."""

    row: str
    kind: str  # "family" | "feature"
    check: str  # "static" or "dynamic:<probe>"
    baseline: str
    target: str
    reason: str

    def line(self) -> str:
        return f"{self.row}: {self.check} {self.baseline} -> {self.target}: {self.reason or 'no details'}"


@dataclass(frozen=True)
class RunReport:
    """Everything the summary shows (built by the run command)."""

    baseline: dict[str, Any]  # the matrix's revision entry
    target: dict[str, Any]
    source: str
    suites: tuple[str, ...]
    breaks: tuple[Break, ...]
    submodule: str = ""
    notes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    probes: int = 0
    family_rows: tuple[str, ...] = ()
    baseline_origin: str = "the pinned commit"

    @property
    def families_broken(self) -> list[str]:
        return sorted({b.row for b in self.breaks if b.kind == "family"})


def static_breaks(matrix: Matrix, baseline: str, target: str) -> list[Break]:
    """Rows statically fine at ``baseline`` and not at ``target`` (families and features)."""
    out = []
    for row in matrix.rows:
        before, after = matrix.cell(row["name"], baseline), matrix.cell(row["name"], target)
        if before is None or after is None:
            continue
        if before["status"] in OK_STATIC and after["status"] not in OK_STATIC:
            out.append(Break(row["name"], row["kind"], "static", before["status"], after["status"],
                             after.get("details", "")))
        elif before["status"] == "partial" and (lost := _variants_lost(before, after)):
            out.append(Break(row["name"], row["kind"], "static", before["status"], after["status"],
                             f"variants that ran no longer run: {', '.join(lost)}; {after.get('details', '')}"))
    return out


def _running_variants(cell: dict[str, Any]) -> set[str] | None:
    """The variants that run in a cell (None: all of them)."""
    if cell["status"] in OK_STATIC:
        return None
    return {n for n, v in (cell.get("variants") or {}).items() if v.get("status") in OK_STATIC}


def _variants_lost(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Variants of a ``partial`` baseline cell that ran there and do not at the target."""
    ran, runs = _running_variants(before) or set(), _running_variants(after)
    return [] if runs is None else sorted(ran - runs)


def _covered(result: ProbeOutcome, families: Sequence[str], declared: Sequence[str]) -> list[str]:
    """Rows a probe gives evidence for: its own rows, else its declared rows, else every family."""
    return list(result.rows) or list(declared) or list(families)


def _row_outcome(result: ProbeOutcome, row: str) -> tuple[str, str]:
    """(status, details) of ``row`` in one probe result; the probe's own status when it has no row entry."""
    if result.status in ("error", "timeout") or row not in result.rows:
        return result.status, result.details
    entry = result.rows[row] or {}
    return str(entry.get("status", result.status)), str(entry.get("details", ""))


def dynamic_breaks(results: Iterable[ProbeOutcome], baseline: str, target: str, *,
                   families: Sequence[str], kinds: dict[str, str] | None = None,
                   declared_rows: dict[str, Sequence[str]] | None = None) -> list[Break]:
    """Probe rows that passed at ``baseline`` and fail at ``target`` (same probe, same row).

    ``kinds`` maps row names to "family"/"feature" (unknown rows count as features);
    ``declared_rows`` maps a probe name to the rows the catalog says it covers.
    """
    kinds = kinds or {f: "family" for f in families}
    declared_rows = declared_rows or {}
    by_key: dict[tuple[str, str], ProbeOutcome] = {}
    for r in results:
        by_key[(r.spec, r.test)] = r
    out = []
    tests = sorted({t for s, t in by_key if s == baseline} & {t for s, t in by_key if s == target})
    for test in tests:
        before, after = by_key[(baseline, test)], by_key[(target, test)]
        declared = declared_rows.get(test, ())
        rows = dict.fromkeys([*_covered(before, families, declared), *_covered(after, families, declared)])
        for row in rows:
            was, _ = _row_outcome(before, row)
            now, why = _row_outcome(after, row)
            if was == "passed" and now in BAD_DYNAMIC:
                out.append(Break(row, kinds.get(row, "feature"), f"dynamic:{test}", was, now, _first_line(why)))
        if test in GATING_TESTS and before.status == "passed" and after.status in BAD_DYNAMIC:
            out += [Break(f, "family", f"dynamic:{test}", before.status, after.status, _first_line(after.details))
                    for f in families if f not in rows]
    return out


def _first_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _describe(rev: dict[str, Any]) -> str:
    version = f" (megatron-core {rev['version']})" if rev.get("version") else ""
    return f"`{rev['spec']}`{version}"


def _cell_status(matrix: Matrix, row: str, spec: str, platform: str | None) -> str:
    cell = matrix.cell(row, spec)
    if cell is None:
        return "-"
    if platform is None:
        return str(cell.get("status", "-"))
    dyn = (cell.get("dynamic") or {}).get(platform)
    return str(dyn.get("status", "-")) if isinstance(dyn, dict) else "-"


def render_summary(report: RunReport, matrix: Matrix, *, platform: str | None = None) -> str:
    """The Markdown summary (``summary.md``, ``$GITHUB_STEP_SUMMARY``, stdout)."""
    base, tgt = report.baseline["spec"], report.target["spec"]
    broken = report.families_broken
    verdict = (f"**{len(broken)} supported famil{'y' if len(broken) == 1 else 'ies'} broke: {', '.join(broken)}**"
               if broken else "**no family that works at the pinned commit broke**")
    lines = [
        f"# mcore-compat run: {_describe(report.target)}",
        "",
        f"- target: {_describe(report.target)} from `{report.source}`",
        f"- baseline: {_describe(report.baseline)} ({report.baseline_origin})",
        f"- suites: {', '.join(report.suites)}" + (f" ({report.probes} probe runs on {platform})" if platform else ""),
        f"- result: {verdict}",
    ]
    if report.submodule:
        lines.append(f"- submodule: {report.submodule}")
    lines += [f"- note: {n}" for n in report.notes]
    header = ["family", "static, pinned", "static, target"]
    if platform:
        header += [f"{platform}, pinned", f"{platform}, target"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for fam in report.family_rows:
        cells = [_cell_status(matrix, fam, base, None), _cell_status(matrix, fam, tgt, None)]
        if platform:
            cells += [_cell_status(matrix, fam, base, platform), _cell_status(matrix, fam, tgt, platform)]
        mark = " **(broke)**" if fam in broken else ""
        lines.append(f"| {fam}{mark} | " + " | ".join(cells) + " |")
    family_breaks = sorted((b for b in report.breaks if b.kind == "family"), key=lambda b: (b.row, b.check))
    if family_breaks:
        lines += ["", "## What broke", ""] + [f"- **{b.row}**, {b.check}: {b.baseline} -> {b.target}: "
                                                f"{b.reason or 'no details'}" for b in family_breaks]
    feature_breaks = [b for b in report.breaks if b.kind != "family"]
    if feature_breaks:
        lines += ["", "## Features that regressed (informational)", ""]
        lines += [f"- {b.row}, {b.check}: {b.baseline} -> {b.target}: {b.reason or 'no details'}"
                  for b in feature_breaks]
    if report.files:
        lines += ["", "Reports: " + ", ".join(f"`{f}`" for f in report.files)]
    return "\n".join(lines) + "\n"
