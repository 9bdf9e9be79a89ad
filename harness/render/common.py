"""What both renderers share: status symbols, column labels, cell text."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AGREEMENT_MARK",
    "DYNAMIC_STYLE",
    "OUTSIDE_MARK",
    "PLATFORMS",
    "STATUS_STYLE",
    "cell_text",
    "column_label",
    "dynamic_of",
    "dynamic_style",
    "outside_python_range",
    "platforms_in",
    "status_of",
]

PLATFORMS = ("cpu", "gpu")

STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    # status: (symbol, background, description)
    "supported": ("✅", "#2e9e4f", "every check holds"),
    "renamed": ("🔁", "#d9a400", "only renamed fields; the compat layer translates them"),
    "missing": ("❌", "#c8373b", "something the row needs is absent"),
    "error": ("⚠️", "#6b4fa0", "the revision could not be read or parsed"),
    "pass": ("✅", "#2e9e4f", "probe passed"),
    "fail": ("❌", "#c8373b", "probe failed"),
    "skipped": ("➖", "#8a8f98", "not run"),
    "unchecked": ("·", "#d5d8de", "no static verdict (only the probes report this row)"),
}
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
    """``0.16.1`` for releases, ``git:abc1234`` (shortened) for others."""
    if rev.get("kind") == "pypi" and rev.get("version"):
        return str(rev["version"])
    spec = str(rev["spec"])
    if spec.startswith("git:") and rev.get("commit"):
        ref = spec[4:]
        return f"git:{ref[:10] if len(ref) >= 40 else ref}"
    return spec if len(spec) <= 24 else "…" + spec[-23:]


def cell_text(row: str, rev: dict[str, Any], cell: dict[str, Any] | None) -> str:
    """Plain-text details of a cell (tooltip, click panel, Markdown notes)."""
    if cell is None:
        return f"{row} @ {rev['spec']}: not evaluated"
    lines = [f"{row} @ {rev['spec']}: {cell['status']}"]
    if rev.get("version"):
        lines.append(f"megatron-core {rev['version']}" + (f", commit {rev['commit'][:12]}" if rev.get("commit") else ""))
    if cell.get("missing"):
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
