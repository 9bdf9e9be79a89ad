"""What both renderers share: status symbols, column labels, cell text."""

from __future__ import annotations

from typing import Any

__all__ = ["STATUS_STYLE", "cell_text", "column_label", "status_of"]

STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    # status: (symbol, background, description)
    "supported": ("✅", "#2e9e4f", "every check holds"),
    "renamed": ("🔁", "#d9a400", "only renamed fields; the compat layer translates them"),
    "missing": ("❌", "#c8373b", "something the row needs is absent"),
    "error": ("⚠️", "#6b4fa0", "the revision could not be read or parsed"),
    "pass": ("✅", "#2e9e4f", "probe passed"),
    "fail": ("❌", "#c8373b", "probe failed"),
    "skipped": ("➖", "#8a8f98", "not run"),
}
_UNKNOWN = ("❔", "#8a8f98", "status not known to this renderer")


def status_of(cell: dict[str, Any] | None) -> str:
    return cell["status"] if cell else "absent"


def style(status: str) -> tuple[str, str, str]:
    return STATUS_STYLE.get(status, _UNKNOWN)


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
    prov = cell.get("provenance") or {}
    if prov:
        lines.append("from: " + ", ".join(f"{k}={v}" for k, v in prov.items()))
    return "\n".join(lines)
