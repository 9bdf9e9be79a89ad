"""Fold probe results into the matrix, next to the static verdicts, one platform (``cpu`` / ``gpu``) at a time.

Each cell a probe gave evidence for gets ``cell["dynamic"][platform]``::

    {"status": "passed"|"failed"|"skipped"|"error"|"timeout", "details": str,
     "tests": {test: {"status", "details"}}, "variants"?: {"v0": "passed"|"failed", ...}, "warnings": [...],
     "device", "python", "mcore_version", "outside_python_range": bool,
     "agreement": "agree"|"disagree"|"explained"|None, "explanation"?, "provenance": {...}}

``variants`` (a family probe's rows record each variant's ``<variant>.passed``) is what a ``partial``
static verdict is compared with: the variants it says cannot run must be exactly those that failed.

and ``cell["agreement"]`` / ``cell["explanation"]`` summarise every platform
(:func:`harness.agreement.settle_agreement`). Each revision gets ``revision["dynamic"][platform]``: the
versions it ran with, every test's status, the warnings MCore emitted (deduplicated) and the timing. A
revision already probed on the platform in the same environment (MCore, Python, torch, transformers,
device) keeps the tests this run did not repeat (a sweep of some tests, e.g. ``hybrid:*``, adds to the
record; a note names the torch / transformers version the earlier tests ran with where it differs); on
another device, Python, MCore or preparation method the new summary replaces it.

Evidence: a result's own rows (RESULT.json); for a result without rows (``error`` / ``timeout``, a
skipped test) the rows the catalog says the test is about. A cell's status is ``failed`` if any test
failed it, else ``error`` / ``timeout`` if one could not judge it, else ``passed`` if one passed, else
``skipped``. Agreement with the static verdict: :mod:`harness.agreement`.

``ckpt_compat:<family>`` results are not matrix cells: they go into ``matrix.checkpoint_compat``
(:mod:`harness.ckpt_table`), kept by :func:`carry_dynamic` like every probe result.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.agreement import UNCHECKED, reassess_cell
from harness.ckpt_table import cells_from_result, merge_cells
from harness.matrix import Matrix
from harness.probes.ckpt_grid import parse_test
from harness.probes.runner import ProbeResult

__all__ = ["CELL_ORDER", "PLATFORMS", "Carried", "carry_dynamic", "cell_status", "fold_results", "rows_for_test"]

log = logging.getLogger("harness.probes.fold")

PLATFORMS = ("cpu", "gpu")
CELL_ORDER = ("failed", "error", "timeout", "passed", "skipped")
"""Which test status decides a cell's dynamic status (first wins)."""


def rows_for_test(name: str) -> tuple[str, ...]:
    """The matrix rows a test gives evidence for (the catalog's; ``family:<f>`` -> ``f`` without it)."""
    try:
        from harness.probes.catalog import test_by_name
    except ImportError:
        test_by_name = None
    if test_by_name is not None:
        try:
            return tuple(test_by_name(name).rows)
        except (KeyError, LookupError):
            pass
    kind, sep, rest = name.partition(":")
    return (rest,) if sep and kind == "family" else ()


def cell_status(statuses: Iterable[str]) -> str:
    """The dynamic status of a cell from its tests' statuses (see :data:`CELL_ORDER`)."""
    seen = set(statuses)
    return next((s for s in CELL_ORDER if s in seen), "skipped")


def _evidence(result: ProbeResult) -> dict[str, tuple[str, str]]:
    """``row -> (status, details)`` that ``result`` gives."""
    out: dict[str, tuple[str, str]] = {}
    for row, entry in (result.rows or {}).items():
        if isinstance(entry, dict) and entry.get("status"):
            out[row] = (str(entry["status"]), str(entry.get("details", "")))
    if not out:
        for row in rows_for_test(result.test):
            out[row] = (result.status, result.details)
    return out


def _variant_outcomes(results: Iterable[ProbeResult], row: str) -> dict[str, str]:
    """``{"v0": "passed"|"failed"}`` of ``row``'s variants, from the family probe's ``<variant>.passed`` metrics."""
    out: dict[str, str] = {}
    for result in results:
        entry = (result.rows or {}).get(row)
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        for key, value in (metrics or {}).items():
            if key.endswith(".passed") and isinstance(value, bool):
                out[key.removesuffix(".passed")] = "passed" if value else "failed"
    return out


def _dedup(warnings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for w in warnings:
        key = (w.get("category"), w.get("message"), w.get("filename"), w.get("lineno"))
        if key not in seen:
            seen.add(key)
            out.append(dict(w))
    return out


def _revision_entry(matrix: Matrix, spec: str, results: list[ProbeResult]) -> dict[str, Any]:
    for rev in matrix.revisions:
        if rev["spec"] == spec:
            return rev
    kind = spec.partition(":")[0] if ":" in spec else spec
    meta = results[0].meta
    rev = {"spec": spec, "kind": kind, "version": meta.get("mcore_version"), "commit": None, "error": None,
           "notes": ["no static scan: dynamic probes only"]}
    matrix.revisions.append(rev)
    return rev


def _ensure_row(matrix: Matrix, row: str, entry: dict[str, Any] | None = None) -> None:
    if not any(r["name"] == row for r in matrix.rows):
        matrix.rows.append(dict(entry) if entry else
                           {"name": row, "kind": "probe", "description": "a row only the dynamic probes report"})


def _unchecked_cell() -> dict[str, Any]:
    return {"status": UNCHECKED, "missing": [], "renamed": {}, "details": "no static verdict", "provenance": {}}


def _first(results: list[ProbeResult], key: str) -> Any:
    return next((r.meta[key] for r in results if r.meta.get(key) not in (None, "")), None)


def _revision_summary(results: list[ProbeResult], stamp: dict[str, Any], timing: dict[str, Any] | None
                      ) -> dict[str, Any]:
    summary = {key: _first(results, key) for key in ("device", "python", "torch", "transformers", "mcore_version",
                                                      "requires_python", "method")}
    summary["outside_python_range"] = bool(_first(results, "outside_python_range"))
    summary["notes"] = list(dict.fromkeys(n for r in results for n in r.meta.get("revision_notes") or []))
    summary["tests"] = {r.test: {"status": r.status, "details": r.details, "duration_s": round(r.duration_s, 3),
                                 "cached": r.cached} for r in results}
    summary["warnings"] = _dedup(w for r in results for w in r.warnings)
    if timing:
        summary["timing"] = dict(timing)
    summary["provenance"] = dict(stamp)
    return summary


_SAME_RUNTIME = ("device", "python", "mcore_version", "method")
_LIBRARIES = ("torch", "transformers")


def _merged_summary(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with ``old``'s tests, warnings and notes kept (timings added up) when both ran on the same device,
    Python, MCore and method; a note names any library version the earlier tests ran with instead."""
    if not old or any(old.get(k) != new.get(k) for k in _SAME_RUNTIME):
        return new
    merged = dict(new)
    changed = [f"{k} {old[k]}" for k in _LIBRARIES if old.get(k) and old.get(k) != new.get(k)]
    earlier = [t for t in (old.get("tests") or {}) if t not in new["tests"]]
    if changed and earlier:
        new = {**new, "notes": [*new["notes"], f"{', '.join(earlier[:3])}{' ...' if len(earlier) > 3 else ''} "
                                               f"({len(earlier)} tests) ran with {', '.join(changed)}"]}
    merged["tests"] = {**(old.get("tests") or {}), **new["tests"]}
    merged["warnings"] = _dedup([*(old.get("warnings") or []), *new["warnings"]])
    merged["notes"] = list(dict.fromkeys([*(old.get("notes") or []), *new["notes"]]))
    if old.get("timing") and new.get("timing"):  # seconds and probe counts of the recorded tests, over both runs
        a, b = old["timing"], new["timing"]
        merged["timing"] = {**a, **b, **{k: round(a[k] + b[k], 3) for k in a.keys() & b.keys()
                                        if isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))}}
        if isinstance(a.get("statuses"), dict) or isinstance(b.get("statuses"), dict):
            counts = dict(a.get("statuses") or {})
            for status, n in (b.get("statuses") or {}).items():
                counts[status] = counts.get(status, 0) + n
            merged["timing"]["statuses"] = counts
    return merged


def fold_results(matrix: Matrix, results: Iterable[ProbeResult], *, platform: str,
                 timings: Mapping[str, Mapping[str, Any]] | None = None) -> Matrix:
    """A copy of ``matrix`` with ``results`` folded in as platform ``platform`` (see the module docstring).

    Revisions and rows the matrix lacks are added (cells without a static verdict are ``unchecked``).
    ``timings`` (spec -> :class:`~harness.probes.sweep.RevisionTiming` as a dict) go into each
    revision's summary.
    """
    if platform not in PLATFORMS:
        from harness.errors import ProbeError

        raise ProbeError(f"expected platform in {PLATFORMS}, found {platform!r}")
    out = copy.deepcopy(matrix)
    stamp = {"source": "probes", "platform": platform, "tool_version": out.tool_version,
             "generated_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    by_spec: dict[str, list[ProbeResult]] = {}
    checkpoint_cells: list[dict[str, Any]] = []
    for r in results:
        if parse_test(r.test) is not None:  # cross-version checkpoint cells: their own table
            checkpoint_cells += cells_from_result(r, platform=platform, stamp=stamp)
            continue
        by_spec.setdefault(r.spec, []).append(r)
    out.checkpoint_compat = merge_cells(out.checkpoint_compat, checkpoint_cells)
    for spec, rs in by_spec.items():
        rev = _revision_entry(out, spec, rs)
        summary = _merged_summary((rev.get("dynamic") or {}).get(platform),
                                  _revision_summary(rs, stamp, (timings or {}).get(spec)))
        rev.setdefault("dynamic", {})[platform] = summary
        evidence: dict[str, list[tuple[str, str, str, ProbeResult]]] = {}
        for r in rs:
            for row, (status, details) in _evidence(r).items():
                evidence.setdefault(row, []).append((r.test, status, details, r))
        for row, items in evidence.items():
            _ensure_row(out, row)
            cell = out.cells.setdefault((row, spec), _unchecked_cell())
            status = cell_status(s for _, s, _, _ in items)
            bad = [f"{t}: {d}" for t, s, d, _ in items if s == status and status != "passed"]
            dyn: dict[str, Any] = {
                "status": status,
                "details": "; ".join(bad) if bad else f"{sum(s == 'passed' for _, s, _, _ in items)} test(s) passed",
                "tests": {t: {"status": s, "details": d} for t, s, d, _ in items},
                "warnings": _dedup(w for *_, r in items for w in r.warnings),
                "device": summary["device"], "python": summary["python"], "mcore_version": summary["mcore_version"],
                "outside_python_range": summary["outside_python_range"],
            }
            variants = _variant_outcomes((r for *_, r in items), row)
            if variants:
                dyn["variants"] = variants
            dyn["provenance"] = dict(stamp)
            cell.setdefault("dynamic", {})[platform] = dyn
            reassess_cell(row, rev, cell)
    log.info("folded %d revisions (%s) into the matrix", len(by_spec), platform)
    return out


@dataclass(frozen=True)
class Carried:
    """What :func:`carry_dynamic` kept: revisions per platform, cells, and the probed revisions it dropped."""

    revisions: dict[str, int]
    cells: int
    dropped: tuple[str, ...]

    def summary(self) -> str:
        if not self.revisions and not self.cells:
            return "no probe results"
        per = ", ".join(f"{p} {n} revision(s)" for p, n in sorted(self.revisions.items()))
        return f"probe results of {per} ({self.cells} cells)" + (
            f"; dropped those of {len(self.dropped)} revision(s) not in this matrix: {', '.join(self.dropped)}"
            if self.dropped else "")


def carry_dynamic(matrix: Matrix, previous: Matrix) -> tuple[Matrix, Carried]:
    """A copy of ``matrix`` (fresh static verdicts) with the probe results of ``previous`` for its revisions.

    Every platform's ``dynamic`` entry of the revisions ``matrix`` has is copied over, cell by cell
    (rows only the probes report are added, as ``unchecked`` cells) and each cell's agreement is
    recomputed against the new static verdict. Probe results of revisions ``matrix`` lacks are
    dropped and named in the returned :class:`Carried`.
    """
    out = copy.deepcopy(matrix)
    revs = {r["spec"]: r for r in out.revisions}
    probed: dict[str, int] = {}
    dropped: dict[str, None] = {}
    for rev in previous.revisions:
        if not rev.get("dynamic"):
            continue
        if rev["spec"] not in revs:
            dropped[rev["spec"]] = None
            continue
        revs[rev["spec"]]["dynamic"] = copy.deepcopy(rev["dynamic"])
        for platform in rev["dynamic"]:
            probed[platform] = probed.get(platform, 0) + 1
    probe_rows = {r["name"]: r for r in previous.rows if r.get("kind") == "probe"}
    cells = 0
    for (row, spec), old in previous.cells.items():
        if not old.get("dynamic"):
            continue
        if spec not in revs:
            dropped[spec] = None
            continue
        _ensure_row(out, row, probe_rows.get(row))
        cell = out.cells.setdefault((row, spec), _unchecked_cell())
        cell["dynamic"] = copy.deepcopy(old["dynamic"])
        reassess_cell(row, revs[spec], cell)
        cells += 1
    out.checkpoint_compat = merge_cells(previous.checkpoint_compat, out.checkpoint_compat)
    carried = Carried(revisions=probed, cells=cells, dropped=tuple(dropped))
    log.info("kept %s", carried.summary())
    return out, carried
