"""Markdown renderings: the matrix grid with per-cell notes, and the feature availability table."""

from __future__ import annotations

from harness.availability import availability
from harness.matrix import Matrix
from harness.render.common import STATUS_STYLE, column_label, style

__all__ = ["render_features_markdown", "render_matrix_markdown"]


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _legend() -> str:
    return " · ".join(f"{sym} {name}" for name, (sym, _, _) in list(STATUS_STYLE.items())[:4])


def render_matrix_markdown(matrix: Matrix) -> str:
    """The grid (rows x revisions) followed by what each non-supported cell lacks."""
    revs = matrix.revisions
    out = [
        "# mcore-compat matrix",
        "",
        f"Generated {matrix.generated_at} by mcore-compat {matrix.tool_version} "
        f"from {len(revs)} revisions and {len(matrix.rows)} rows. Source of truth: `matrix.json`.",
        "",
        f"Legend: {_legend()}",
        "",
    ]
    families = [r for r in matrix.rows if r["kind"] == "family"]
    if not families:
        out += ["_No bridge family is registered yet: only feature rows are shown._", ""]
    header = "| row | " + " | ".join(_esc(column_label(r)) for r in revs) + " |"
    out += [header, "|" + "---|" * (len(revs) + 1)]
    for row in matrix.rows:
        cells = []
        for rev in revs:
            cell = matrix.cell(row["name"], rev["spec"])
            cells.append(style(cell["status"])[0] if cell else " ")
        kind = "family" if row["kind"] == "family" else "feature"
        out.append(f"| **{_esc(row['name'])}** ({kind}) | " + " | ".join(cells) + " |")
    errors = [r for r in revs if r.get("error")]
    if errors:
        out += ["", "## Revisions that could not be read", ""]
        out += [f"- `{r['spec']}`: {_esc(str(r['error']))}" for r in errors]
    out += ["", "## Details", ""]
    for row in matrix.rows:
        notes = []
        for rev in revs:
            cell = matrix.cell(row["name"], rev["spec"])
            if not cell or cell["status"] in ("supported", "error"):
                continue
            what = ", ".join(f"`{m}`" for m in cell.get("missing", []))
            ren = ", ".join(f"`{k}` is `{v}`" for k, v in (cell.get("renamed") or {}).items())
            text = "; ".join(t for t in (what, f"renamed: {ren}" if ren else "") if t)
            notes.append((column_label(rev), cell["status"], text))
        if not notes:
            continue
        out.append(f"### {row['name']}")
        out.append("")
        # consecutive revisions with the same note are folded into one line
        groups: list[list] = []
        for label, status, text in notes:
            if groups and groups[-1][1:] == [status, text]:
                groups[-1][0].append(label)
            else:
                groups.append([[label], status, text])
        for labels, status, text in groups:
            span = labels[0] if len(labels) == 1 else f"{labels[0]} … {labels[-1]}"
            out.append(f"- {span}: {style(status)[0]} {status}" + (f": {text}" if text else ""))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_features_markdown(matrix: Matrix) -> str:
    """First release of each feature, and releases where it disappears or comes back."""
    releases = matrix.released()
    span = f"{releases[0]['version']} … {releases[-1]['version']}" if releases else "none"
    out = [
        "# Feature availability",
        "",
        f"Across {len(releases)} released versions ({span}); a feature counts as available when its "
        "verdict is supported or renamed. Generated from `matrix.json` "
        f"({matrix.generated_at}).",
        "",
        "| feature | description | first release | disappears in | returns in | in latest |",
        "|---|---|---|---|---|---|",
    ]
    for a in availability(matrix, ("feature", "family")):
        out.append(
            f"| {_esc(a.row)} | {_esc(a.description)} | {a.first or 'never'} | "
            f"{', '.join(a.removed_in) or '—'} | {', '.join(a.returned_in) or '—'} | "
            f"{'yes' if a.latest else 'no'} |"
        )
    return "\n".join(out) + "\n"
