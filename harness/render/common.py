"""What both renderers share: status symbols, column labels, cell text."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AGREEMENT_MARK",
    "DYNAMIC_STYLE",
    "OUTSIDE_MARK",
    "PLATFORMS",
    "STATIC_STATUSES",
    "STATUS_STYLE",
    "cell_text",
    "change_lines",
    "column_label",
    "dynamic_of",
    "dynamic_style",
    "outside_python_range",
    "platforms_in",
    "status_of",
    "variant_notes",
    "variant_runs",
    "variants_runs_from",
]

PLATFORMS = ("cpu", "gpu")

STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    # status: (symbol, background, description)
    "supported": ("✅", "#2e9e4f", "every check holds"),
    "renamed": ("🔁", "#d9a400", "only renamed fields; the compat layer translates them"),
    "partial": ("🌓", "#3f9fb5", "some variants of the family run, others need a later (or earlier) release"),
    "missing": ("❌", "#c8373b", "something the row needs is absent"),
    "error": ("⚠️", "#6b4fa0", "the revision could not be read or parsed"),
    "pass": ("✅", "#2e9e4f", "probe passed"),
    "fail": ("❌", "#c8373b", "probe failed"),
    "skipped": ("➖", "#8a8f98", "not run"),
    "unchecked": ("·", "#d5d8de", "no static verdict (only the probes report this row)"),
}
STATIC_STATUSES = ("supported", "renamed", "partial", "missing", "error")
"""The static verdicts (:mod:`harness.verdicts`), in legend order."""
_UNKNOWN = ("❔", "#8a8f98", "status not known to this renderer")

DYNAMIC_STYLE: dict[str, tuple[str, str, str]] = {
    # dynamic (probe) status: (symbol, colour, description)
    "passed": ("✅", "#2e9e4f", "the probe passed"),
    "failed": ("❌", "#c8373b", "the probe ran and failed"),
    "error": ("⚠️", "#6b4fa0", "the probe could not judge (import failure, crash)"),
    "timeout": ("⏱️", "#e07b00", "the probe ran past its time limit"),
    "skipped": ("➖", "#8a8f98", "the probe skipped it"),
}
_NOT_PROBED = ("·", "#eceef1", "not probed")

AGREEMENT_MARK: dict[str, str] = {"agree": "", "explained": "ℹ️", "disagree": "‼️"}
"""Suffix of a cell whose static and dynamic verdicts agree, disagree for a known reason, or disagree."""

OUTSIDE_MARK = "†"
"""Marks revisions (and their cells) outside the release's declared Python range."""


def status_of(cell: dict[str, Any] | None) -> str:
    return cell["status"] if cell else "absent"


def style(status: str) -> tuple[str, str, str]:
    return STATUS_STYLE.get(status, _UNKNOWN)


def dynamic_style(status: str | None) -> tuple[str, str, str]:
    return _NOT_PROBED if status is None else DYNAMIC_STYLE.get(status, _UNKNOWN)


def dynamic_of(cell: dict[str, Any] | None, platform: str) -> dict[str, Any] | None:
    """The probe verdict of ``cell`` on ``platform`` (None: not probed)."""
    return ((cell or {}).get("dynamic") or {}).get(platform)


def platforms_in(matrix: Any) -> list[str]:
    """The platforms any cell or revision of ``matrix`` has probe results for (cpu first)."""
    found = {p for c in matrix.cells.values() for p in (c.get("dynamic") or {})}
    found |= {p for r in matrix.revisions for p in (r.get("dynamic") or {})}
    return [p for p in PLATFORMS if p in found] + sorted(found - set(PLATFORMS))


def outside_python_range(rev: dict[str, Any]) -> bool:
    """Whether a platform probed ``rev`` with a Python outside the release's declared range."""
    return any(d.get("outside_python_range") for d in (rev.get("dynamic") or {}).values())


def column_label(rev: dict[str, Any]) -> str:
    """``0.16.1`` for releases, the revision's own ``label`` (``main@1a2b3c4``), ``git:abc1234`` (shortened)
    for other commits."""
    if rev.get("label"):
        return str(rev["label"])
    if rev.get("kind") == "pypi" and rev.get("version"):
        return str(rev["version"])
    spec = str(rev["spec"])
    if spec.startswith("git:") and rev.get("commit"):
        ref = spec[4:]
        return f"git:{ref[:10] if len(ref) >= 40 else ref}"
    return spec if len(spec) <= 24 else "…" + spec[-23:]


def cell_text(row: str, rev: dict[str, Any], cell: dict[str, Any] | None,
              runs_from: dict[str, str] | None = None) -> str:
    """Plain-text details of a cell (tooltip, click panel, Markdown notes); ``runs_from``: see
    :func:`variants_runs_from`."""
    if cell is None:
        return f"{row} @ {rev['spec']}: not evaluated"
    lines = [f"{row} @ {rev['spec']}: {cell['status']}"]
    if rev.get("version"):
        lines.append(f"megatron-core {rev['version']}" + (f", commit {rev['commit'][:12]}" if rev.get("commit") else ""))
    if cell.get("variants"):
        lines += variant_notes(cell, runs_from)
    elif cell.get("missing"):
        lines.append("missing: " + ", ".join(cell["missing"]))
    if cell.get("renamed"):
        lines.append("renamed: " + ", ".join(f"{k} -> {v}" for k, v in cell["renamed"].items()))
    if cell.get("details") and cell["status"] in ("error",):
        lines.append(str(cell["details"]))
    for platform, dyn in sorted((cell.get("dynamic") or {}).items()):
        where = ", ".join(x for x in (f"python {dyn['python']}" if dyn.get("python") else "",
                                      "outside the declared Python range" if dyn.get("outside_python_range") else "")
                          if x)
        lines.append(f"{platform}: {dyn.get('status')}" + (f" ({where})" if where else "")
                     + (f": {dyn['details']}" if dyn.get("details") else ""))
    if cell.get("agreement"):
        lines.append(f"static vs dynamic: {cell['agreement']}"
                     + (f": {cell['explanation']}" if cell.get("explanation") else ""))
    prov = cell.get("provenance") or {}
    if prov:
        lines.append("from: " + ", ".join(f"{k}={v}" for k, v in prov.items()))
    return "\n".join(lines)


def _runs(status: str) -> bool:
    return status in ("supported", "renamed")


def variant_notes(cell: dict[str, Any], runs_from: dict[str, str] | None = None) -> list[str]:
    """One line per variant of a ``partial`` cell: runs, or what it lacks (and, from ``runs_from``, the
    release where it runs)."""
    lines = []
    for name, v in (cell.get("variants") or {}).items():
        if _runs(v.get("status", "")):
            lines.append(f"{name}: runs" + (" (renamed fields)" if v.get("status") == "renamed" else ""))
            continue
        where = (runs_from or {}).get(name)
        lines.append(f"{name}: needs {', '.join(v.get('missing') or [])}" + (f" (runs from {where})" if where else ""))
    return lines


def variant_runs(cell: dict[str, Any] | None, variant: str) -> bool:
    """Whether ``variant`` of a family runs at the cell's revision (every variant runs in a supported cell)."""
    if not cell:
        return False
    if cell.get("status") == "partial":
        return _runs(((cell.get("variants") or {}).get(variant) or {}).get("status", ""))
    return _runs(cell.get("status", ""))


def variants_runs_from(matrix: Any, row: str, spec: str) -> dict[str, str]:
    """For each variant of ``row`` that does not run at ``spec``: the nearest release (later first, else earlier)
    where it runs."""
    cell = matrix.cell(row, spec) or {}
    releases = matrix.released()
    order = [r["spec"] for r in releases]
    here = order.index(spec) if spec in order else len(order)
    out: dict[str, str] = {}
    for name, v in (cell.get("variants") or {}).items():
        if _runs(v.get("status", "")):
            continue
        later = [r for r in releases[here + 1:] if variant_runs(matrix.cell(row, r["spec"]), name)]
        earlier = [r for r in releases[:here] if variant_runs(matrix.cell(row, r["spec"]), name)]
        if later:
            out[name] = str(later[0]["version"])
        elif earlier:
            out[name] = f"{earlier[-1]['version']} and earlier"
    return out


_CHANGE_LISTS = (
    ("fields_added", "TransformerConfig fields added"),
    ("fields_removed", "TransformerConfig fields removed"),
    ("defaults_changed", "TransformerConfig defaults changed"),
    ("gpt_model_params_added", "GPTModel parameters added"),
    ("gpt_model_params_removed", "GPTModel parameters removed"),
    ("layer_specs_added", "layer-spec functions added"),
    ("layer_specs_removed", "layer-spec functions removed"),
)


def change_lines(changes: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """``(heading, items)`` of a ``changes_since_release`` entry (:mod:`harness.mainline`), non-empty ones only:
    rows whose verdict changed first, then fields, classes, parameters."""
    out: list[tuple[str, list[str]]] = []
    rows = [f"{r['row']} ({r['kind']}): {r['from']} -> {r['to']}" + (f": {r['details']}" if r['to'] != 'supported'
                                                                       else "")
            for r in changes.get("rows") or []]
    if rows:
        out.append(("families and features whose verdict changed", rows))
    for key, heading in _CHANGE_LISTS:
        if changes.get(key):
            out.append((heading, list(changes[key])))
    for cls, ch in (changes.get("classes_changed") or {}).items():
        items = [f"+{f}" for f in ch.get("added", [])] + [f"-{f}" for f in ch.get("removed", [])]
        out.append((f"{cls} fields", items))
    return out
