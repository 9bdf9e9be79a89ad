"""Markdown renderings: the matrix grid with per-cell notes, and the feature availability table."""

from __future__ import annotations

from harness.availability import availability
from harness.matrix import Matrix
from harness.render.checkpoint_compat import render_checkpoint_markdown
from harness.render.common import (
    AGREEMENT_MARK,
    DYNAMIC_STYLE,
    OUTSIDE_MARK,
    STATIC_STATUSES,
    change_lines,
    column_label,
    dynamic_of,
    dynamic_style,
    outside_python_range,
    platforms_in,
    style,
    variant_notes,
    variants_runs_from,
)
from harness.render.dynamic import agreement_counts, deprecations, disagreements, revision_probes
from harness.render.model_classes import (
    DEPRECATED_MARK,
    MODEL_CLASS_LABELS,
    model_class_summaries,
    probed_text,
    row_model_class,
    span,
)

__all__ = ["render_features_markdown", "render_matrix_markdown"]


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _legend() -> str:
    return " · ".join(f"{style(name)[0]} {name}" for name in STATIC_STATUSES)


def _dynamic_legend(platforms: list[str]) -> list[str]:
    order = " / ".join(["static", *platforms])
    return [
        f"Each cell: {order}. Probes: " + " · ".join(f"{sym} {name}" for name, (sym, _, _) in DYNAMIC_STYLE.items())
        + f" · {dynamic_style(None)[0]} not probed. {AGREEMENT_MARK['disagree']} static and dynamic disagree, "
        f"{AGREEMENT_MARK['explained']} they disagree for a known reason (see below); {OUTSIDE_MARK} the revision "
        "declares a Python range that excludes the interpreter the probes ran on.",
        "",
    ]


def _cell_symbols(cell: dict | None, platforms: list[str], outside: bool) -> str:
    if not cell:
        return " "
    parts = [style(cell["status"])[0]]
    for platform in platforms:
        dyn = dynamic_of(cell, platform)
        parts.append(dynamic_style(dyn.get("status") if dyn else None)[0])
    text = " / ".join(parts) if platforms else parts[0]
    text += AGREEMENT_MARK.get(cell.get("agreement") or "", "")
    text += DEPRECATED_MARK if cell.get("deprecated") else ""
    return text + (OUTSIDE_MARK if outside and platforms else "")


_GROUP_TITLES = {
    "gpt": "Families on GPTModel",
    "hybrid": "Families on HybridModel (rows `hybrid:<family>`: the provider's `model_class=\"hybrid\"`)",
    "other": "Features and other rows",
}


def _row_groups(matrix: Matrix) -> list[tuple[str, list[dict]]]:
    """The grid's tables: families on GPTModel, families on HybridModel, then the other rows (non-empty ones)."""
    groups: dict[str, list[dict]] = {"gpt": [], "hybrid": [], "other": []}
    for row in matrix.rows:
        model_class = row_model_class(row) if row["kind"] == "family" else None
        groups[model_class if model_class in groups else "other"].append(row)
    return [(_GROUP_TITLES[k], rows) for k, rows in groups.items() if rows]


def _model_class_section(matrix: Matrix) -> list[str]:
    """Per family: first release on each model class, HybridModel probes, GPTModel deprecated / gone."""
    summaries = model_class_summaries(matrix)
    if not summaries:
        return []
    platforms = list(summaries[0].hybrid_probed)
    out = ["## Model classes", "",
           "Each family on MCore's two model classes: the first release where it runs (static verdict supported, "
           "renamed or partial), the first release where its HybridModel probe passed, the revisions whose GPTModel "
           f"announces its deprecation ({DEPRECATED_MARK} in the grid) and those that lack GPTModel.", "",
           "| family | GPTModel from | GPTModel deprecated in | GPTModel gone in | HybridModel from |"
           + "".join(f" HybridModel probe passes from ({p}) |" for p in platforms),
           "|---|---|---|---|---|" + "---|" * len(platforms)]
    for m in summaries:
        hybrid = (m.hybrid_first or "never") + (" (partial)" if m.hybrid_first_partial else "")
        probed = "".join(f" {probed_text(m, p)} |" for p in platforms)
        out.append(f"| {_esc(m.family)} | {m.gpt_first or 'never'} | {_esc(span(m.gpt_deprecated))} | "
                   f"{_esc(span(m.gpt_gone))} | {hybrid} |{probed}")
    return [*out, ""]


def render_matrix_markdown(matrix: Matrix) -> str:
    """The grid (rows x revisions) followed by what each non-supported cell lacks, and the probes' findings."""
    revs = matrix.revisions
    platforms = platforms_in(matrix)
    outside = {r["spec"]: outside_python_range(r) for r in revs}
    out = [
        "# mcore-compat matrix",
        "",
        f"Generated {matrix.generated_at} by mcore-compat {matrix.tool_version} "
        f"from {len(revs)} revisions and {len(matrix.rows)} rows. Source of truth: `matrix.json`.",
        "",
        f"Legend: {_legend()}. {DEPRECATED_MARK} the revision's source announces the row's model class as "
        "deprecated (GPTModel: `GPTModel IS DEPRECATED`, megatron-core 0.19 on); the class still runs.",
        "",
        *(_dynamic_legend(platforms) if platforms else []),
    ]
    families = [r for r in matrix.rows if r["kind"] == "family"]
    if not families:
        out += ["_No bridge family is registered yet: only feature rows are shown._", ""]
    header = "| row | " + " | ".join(_esc(column_label(r)) + (OUTSIDE_MARK if outside[r["spec"]] else "")
                                     for r in revs) + " |"
    for title, rows in _row_groups(matrix):
        out += [f"### {title}", "", header, "|" + "---|" * (len(revs) + 1)]
        for row in rows:
            cells = [_cell_symbols(matrix.cell(row["name"], rev["spec"]), platforms, outside[rev["spec"]])
                     for rev in revs]
            kind = row["kind"] if row["kind"] in ("family", "probe") else "feature"
            label = f"{kind}, {MODEL_CLASS_LABELS['hybrid']}" if row_model_class(row) == "hybrid" else kind
            out.append(f"| **{_esc(row['name'])}** ({label}) | " + " | ".join(cells) + " |")
        out.append("")
    out += _model_class_section(matrix)
    errors = [r for r in revs if r.get("error")]
    if errors:
        out += ["", "## Revisions that could not be read", ""]
        out += [f"- `{r['spec']}`: {_esc(str(r['error']))}" for r in errors]
    out += _main_sections(matrix)
    out += ["", "## Details", ""]
    for row in matrix.rows:
        notes = []
        for rev in revs:
            cell = matrix.cell(row["name"], rev["spec"])
            if not cell or cell["status"] in ("supported", "error", "unchecked"):
                continue
            what = ", ".join(f"`{m}`" for m in cell.get("missing", []))
            if cell.get("variants"):
                what = "; ".join(variant_notes(cell, variants_runs_from(matrix, row["name"], rev["spec"])))
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
    if platforms:
        out += _dynamic_sections(matrix)
    out += render_checkpoint_markdown(matrix)
    return "\n".join(out).rstrip() + "\n"


def _main_sections(matrix: Matrix) -> list[str]:
    """What changed between the newest release and each upstream-main column."""
    out: list[str] = []
    for rev in matrix.revisions:
        changes = rev.get("changes_since_release")
        if not changes:
            continue
        out += ["", f"## {column_label(rev)} vs {changes.get('since_version') or changes.get('since')}", "",
                f"Upstream commit `{rev.get('commit')}` compared with the newest release `{changes.get('since')}`.", ""]
        found = change_lines(changes)
        if not found:
            out.append("_No change a bridge user sees (fields, classes, GPTModel parameters, layer specs, verdicts)._")
        for heading, items in found:
            out.append(f"- {heading} ({len(items)}): " + ", ".join(f"`{_esc(i)}`" for i in items))
    return out


def _dynamic_sections(matrix: Matrix) -> list[str]:
    counts = agreement_counts(matrix)
    out = ["## Static vs dynamic", "",
           f"{counts['agree']} cells agree, {counts['explained']} disagree for a known reason "
           f"(`harness/probes/explanations.py`), {counts['disagree']} disagree.", ""]
    found = disagreements(matrix)
    for kind, title in (("disagree", "Disagreements"), ("explained", "Explained disagreements")):
        items = [d for d in found if d.agreement == kind]
        if not items:
            continue
        out += [f"### {title}", ""]
        for d in items:
            dyn = ", ".join(f"{p} {s}" for p, s in d.dynamic.items())
            mark = f" {OUTSIDE_MARK}" if d.outside_python_range else ""
            line = f"- **{_esc(d.row)}** @ {_esc(d.label)}{mark}: static {d.static}, {dyn}: {_esc(d.details)}"
            out.append(line + (f" — _{_esc(d.explanation)}_" if d.explanation else ""))
        out.append("")
    runs = revision_probes(matrix)
    if runs:
        out += ["## Probe runs per revision", "",
                "| revision | platform | versions | tests | prepare s | probes s | wall s | notes |",
                "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            tests = ", ".join(f"{n} {s}" for s, n in r.counts.items())
            t = r.timing
            secs = [f"{t[k]:.1f}" if isinstance(t.get(k), (int, float)) else ""
                    for k in ("prepare_s", "probe_s", "wall_s")]
            cols = [f"{r.label}{OUTSIDE_MARK if r.outside_python_range else ''}", r.platform, r.versions, tests,
                    *secs, "; ".join(r.notes)]
            out.append("| " + " | ".join(_esc(str(c)) for c in cols) + " |")
        problems = [(r, p) for r in runs for p in r.problems]
        if problems:
            out += ["", "### Probes that could not judge", ""]
            out += [f"- {r.label} ({r.platform}) `{name}`: {status}: {_esc(details)}"
                    for r, (name, status, details) in problems]
        out.append("")
    groups = deprecations(matrix)
    out += ["## Deprecation warnings per revision", ""]
    if not groups:
        out += ["_The probes recorded no deprecation warning from megatron-core._", ""]
    for g in groups:
        span = g.labels[0] if len(g.labels) == 1 else f"{g.labels[0]} … {g.labels[-1]}"
        out += [f"### {span} ({g.platform})", ""]
        for w in g.warnings:
            where = f"{w.get('filename')}:{w.get('lineno')}" if len(g.labels) == 1 else str(w.get("filename"))
            out.append(f"- `{w.get('category')}` {where}: {_esc(str(w.get('message', '')))[:300]}")
        out.append("")
    return out


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
