"""A self-contained HTML page of the matrix: inline CSS and JS, a colour grid, a cell's
details on hover (tooltip) and on click (pinned panel), and the feature availability table.

Every cell is a ``<td class="cell">`` with ``data-status``, ``data-details``, ``data-row``
and ``data-revision`` attributes, so a browser test (or a script) can read the grid.
"""

from __future__ import annotations

import html
import json

from harness.availability import availability
from harness.matrix import Matrix
from harness.render.checkpoint_compat import render_checkpoint_html
from harness.render.common import (
    AGREEMENT_MARK,
    DYNAMIC_STYLE,
    OUTSIDE_MARK,
    STATIC_STATUSES,
    cell_text,
    change_lines,
    column_label,
    dynamic_of,
    dynamic_style,
    outside_python_range,
    platforms_in,
    style,
    variants_runs_from,
)
from harness.render.dynamic import agreement_counts, deprecations, disagreements, revision_probes
from harness.render.model_classes import DEPRECATED_MARK, model_class_summaries, probed_text, row_model_class, span

__all__ = ["render_html"]

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2127}
h1{font-size:1.4rem;margin:0 0 .3rem} h2{font-size:1.1rem;margin-top:2rem}
.meta{color:#555;margin-bottom:1rem}
.wrap{overflow-x:auto;max-width:100%}
table.grid{border-collapse:collapse}
table.grid th,table.grid td{border:1px solid #fff;padding:0}
table.grid thead th{font-weight:500;font-size:11px;writing-mode:vertical-rl;transform:rotate(180deg);
 padding:4px 2px;white-space:nowrap;color:#333}
table.grid th.rowname{text-align:left;padding:2px 8px;font-weight:500;white-space:nowrap}
th.rowname small{color:#777;font-weight:400}
td.cell{width:22px;height:22px;min-width:22px;cursor:pointer;outline-offset:-2px}
td.cell:hover,td.cell:focus{outline:2px solid #111}
td.cell.selected{outline:3px solid #000}
#tip{position:fixed;pointer-events:none;background:#111;color:#fff;padding:6px 8px;border-radius:4px;
 font-size:12px;white-space:pre-wrap;max-width:36rem;display:none;z-index:10}
#details{white-space:pre-wrap;background:#f4f5f7;border:1px solid #ccd;padding:.6rem .8rem;min-height:2.6rem;
 font-family:ui-monospace,monospace;font-size:12px;margin:.6rem 0}
.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
table.avail{border-collapse:collapse} table.avail td,table.avail th{border:1px solid #dde;padding:3px 8px;text-align:left}
td.cell.dyn{width:34px;min-width:34px;text-align:right;vertical-align:middle;white-space:nowrap}
td.cell span.p{display:inline-block;width:9px;height:16px;margin:3px 1px 3px 0;border:1px solid #fff;
 vertical-align:middle}
td.cell[data-agreement="disagree"]{box-shadow:inset 0 0 0 3px #111}
td.cell[data-agreement="explained"]{box-shadow:inset 0 0 0 2px #fff}
td.cell[data-outside-python="true"]{background-image:repeating-linear-gradient(45deg,transparent 0 4px,
 rgba(255,255,255,.45) 4px 6px)}
ul.dis li{margin:.2rem 0} .muted{color:#666}
td.cell[data-deprecated="true"]{background-image:linear-gradient(135deg,#fff 0 6px,#111 6px 7px,transparent 7px)}
tr.group th{text-align:left;padding:10px 8px 2px;font-weight:600}
table.ckpt-grid thead th{writing-mode:horizontal-tb;transform:none;font-size:10px;padding:2px}
td.cell.ckpt{text-align:center;font-size:10px;color:#fff} td.ckpt-blank{background:#fafafa}
"""

_JS = """
(function(){
  var tip=document.getElementById('tip'), panel=document.getElementById('details'), sel=null;
  function show(td){panel.textContent=td.getAttribute('data-details');}
  document.querySelectorAll('td.cell').forEach(function(td){
    td.addEventListener('mouseenter',function(){tip.textContent=td.getAttribute('data-details');tip.style.display='block';});
    td.addEventListener('mousemove',function(e){tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+14)+'px';});
    td.addEventListener('mouseleave',function(){tip.style.display='none';});
    function pick(){ if(sel){sel.classList.remove('selected');} sel=td; td.classList.add('selected'); show(td);
      panel.setAttribute('data-row',td.getAttribute('data-row'));
      panel.setAttribute('data-revision',td.getAttribute('data-revision'));
      panel.setAttribute('data-status',td.getAttribute('data-status')); }
    td.addEventListener('click',pick);
    td.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();pick();}});
  });
  var h=decodeURIComponent(location.hash.slice(1));
  if(h){var t=document.querySelector('td.cell[data-key="'+h.replace(/"/g,'')+'"]'); if(t){t.click();}}
})();
"""


def _attr(text: object) -> str:
    return html.escape(str(text), quote=True)


def _probe_marks(cell: dict | None, platforms: list[str]) -> tuple[str, str]:
    """(inner HTML, extra attributes) showing each platform's probe status next to the static colour."""
    if not platforms or cell is None:
        return "", ""
    spans, attrs = [], []
    for platform in platforms:
        dyn = dynamic_of(cell, platform)
        status = dyn.get("status") if dyn else None
        spans.append(f'<span class="p" style="background:{dynamic_style(status)[1]}" '
                     f'title="{_attr(platform)}: {_attr(status or "not probed")}"></span>')
        attrs.append(f'data-{_attr(platform)}="{_attr(status or "none")}"')
    if cell.get("agreement"):
        attrs.append(f'data-agreement="{_attr(cell["agreement"])}"')
    return "".join(spans), " " + " ".join(attrs)


def _grid(matrix: Matrix) -> str:
    revs = matrix.revisions
    platforms = platforms_in(matrix)
    outside = {r["spec"]: outside_python_range(r) for r in revs}
    head = "".join(
        f'<th title="{_attr(r["spec"])} {_attr(r.get("commit") or "")}">{_attr(column_label(r))}'
        f'{OUTSIDE_MARK if outside[r["spec"]] else ""}</th>'
        for r in revs
    )
    body: list[str] = []
    current = None
    for row in matrix.rows:
        tds = []
        for rev in revs:
            cell = matrix.cell(row["name"], rev["spec"])
            status = cell["status"] if cell else "absent"
            colour = style(status)[1] if cell else "#eceef1"
            key = f'{row["name"]}@{rev["spec"]}'
            inner, extra = _probe_marks(cell, platforms)
            runs_from = variants_runs_from(matrix, row["name"], rev["spec"]) if status == "partial" else None
            if cell and cell.get("variants"):
                extra += f' data-variants="{_attr(json.dumps(cell["variants"], sort_keys=True))}"'
            if outside[rev["spec"]] and platforms:
                extra += ' data-outside-python="true"'
            if cell and cell.get("deprecated"):
                extra += ' data-deprecated="true"'
            tds.append(
                f'<td class="cell{" dyn" if platforms else ""}" tabindex="0" style="background:{colour}" '
                f'data-key="{_attr(key)}" data-row="{_attr(row["name"])}" data-revision="{_attr(rev["spec"])}" '
                f'data-status="{_attr(status)}"{extra} data-details="{_attr(cell_text(row["name"], rev, cell, runs_from))}">'
                f'{inner}</td>'
            )
        group = _group_title(row)
        if group != current:
            current = group
            body.append(f'<tr class="group" data-group="{_attr(group)}"><th colspan="{len(revs) + 1}">'
                        f'{_attr(group)}</th></tr>')
        kind = f'{row["kind"]}, HybridModel' if row_model_class(row) == "hybrid" else row["kind"]
        body.append(
            f'<tr><th class="rowname" title="{_attr(row.get("description", ""))}">{_attr(row["name"])} '
            f'<small>{_attr(kind)}</small></th>{"".join(tds)}</tr>'
        )
    return (f'<div class="wrap"><table class="grid" id="grid"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _group_title(row: dict) -> str:
    model_class = row_model_class(row) if row["kind"] == "family" else None
    return {"gpt": "Families on GPTModel", "hybrid": 'Families on HybridModel (rows hybrid:<family>: the provider\'s '
            'model_class="hybrid")'}.get(model_class or "", "Features and other rows")


def _model_classes(matrix: Matrix) -> str:
    """Per family: first release on each model class, HybridModel probes, GPTModel deprecated / gone."""
    summaries = model_class_summaries(matrix)
    if not summaries:
        return ""
    platforms = list(summaries[0].hybrid_probed)
    head = "".join(f"<th>HybridModel probe passes from ({_attr(p)})</th>" for p in platforms)
    rows = []
    for m in summaries:
        hybrid = (m.hybrid_first or "never") + (" (partial)" if m.hybrid_first_partial else "")
        probed = "".join(f'<td data-platform="{_attr(p)}">{_attr(probed_text(m, p))}</td>' for p in platforms)
        rows.append(f'<tr data-family="{_attr(m.family)}"><td>{_attr(m.family)}</td><td>{_attr(m.gpt_first or "never")}'
                    f'</td><td class="deprecated">{_attr(span(m.gpt_deprecated))}</td><td class="gone">'
                    f'{_attr(span(m.gpt_gone))}</td><td class="hybrid-first">{_attr(hybrid)}</td>{probed}</tr>')
    return ('<h2 id="model-classes-title">Model classes</h2><p class="muted">Each family on MCore\'s two model '
            'classes: the first release where it runs (static verdict supported, renamed or partial), the first '
            'release where '
            f'its HybridModel probe passed, the revisions whose GPTModel announces its deprecation ({DEPRECATED_MARK}, '
            'a corner mark in the grid) and those that lack GPTModel.</p><table class="avail" id="model-classes">'
            '<thead><tr><th>family</th><th>GPTModel from</th><th>GPTModel deprecated in</th><th>GPTModel gone in</th>'
            f'<th>HybridModel from</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _availability(matrix: Matrix) -> str:
    rows = []
    for a in availability(matrix, ("feature", "family")):
        rows.append(
            f'<tr data-row="{_attr(a.row)}"><td>{_attr(a.row)}</td><td>{_attr(a.description)}</td>'
            f'<td class="first">{_attr(a.first or "never")}</td><td>{_attr(", ".join(a.removed_in) or "—")}</td>'
            f'<td>{_attr(", ".join(a.returned_in) or "—")}</td><td>{"yes" if a.latest else "no"}</td></tr>'
        )
    return ('<table class="avail" id="availability"><thead><tr><th>row</th><th>description</th>'
            '<th>first release</th><th>disappears in</th><th>returns in</th><th>in latest</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _main_sections(matrix: Matrix) -> str:
    """What changed between the newest release and each upstream-main column."""
    parts = []
    for rev in matrix.revisions:
        changes = rev.get("changes_since_release")
        if not changes:
            continue
        items = "".join(f'<li data-change="{_attr(heading)}"><b>{_attr(heading)}</b> ({len(found)}): '
                        + ", ".join(f"<code>{_attr(i)}</code>" for i in found) + "</li>"
                        for heading, found in change_lines(changes))
        parts.append(f'<h2>{_attr(column_label(rev))} vs {_attr(changes.get("since_version") or changes.get("since"))}'
                     f'</h2><p class="muted">Upstream commit <code>{_attr(rev.get("commit"))}</code> compared with the '
                     f'newest release <code>{_attr(changes.get("since"))}</code>.</p>'
                     f'<ul class="main-changes" data-revision="{_attr(rev["spec"])}">'
                     f'{items or "<li>No change a bridge user sees.</li>"}</ul>')
    return "\n".join(parts)


def _dynamic_sections(matrix: Matrix) -> str:
    platforms = platforms_in(matrix)
    if not platforms:
        return ""
    counts = agreement_counts(matrix)
    parts = [f'<h2>Static vs dynamic</h2><p id="agreement-counts" data-agree="{counts["agree"]}" '
             f'data-explained="{counts["explained"]}" data-disagree="{counts["disagree"]}">{counts["agree"]} cells '
             f'agree, {counts["explained"]} disagree for a known reason, {counts["disagree"]} disagree.</p>']
    items = []
    for d in disagreements(matrix):
        dyn = ", ".join(f"{p} {s}" for p, s in d.dynamic.items())
        why = f' <em class="muted">{_attr(d.explanation)}</em>' if d.explanation else ""
        items.append(f'<li data-agreement="{_attr(d.agreement)}" data-row="{_attr(d.row)}" '
                     f'data-revision="{_attr(d.spec)}">{AGREEMENT_MARK[d.agreement]} <b>{_attr(d.row)}</b> @ '
                     f'{_attr(d.label)}{OUTSIDE_MARK if d.outside_python_range else ""}: static {_attr(d.static)}, '
                     f'{_attr(dyn)}: {_attr(d.details)}{why}</li>')
    if items:
        parts.append(f'<ul class="dis" id="disagreements">{"".join(items)}</ul>')
    rows = []
    for r in revision_probes(matrix):
        t = r.timing
        secs = "".join(f"<td>{t[k]:.1f}</td>" if isinstance(t.get(k), (int, float)) else "<td></td>"
                       for k in ("prepare_s", "probe_s", "wall_s"))
        problems = "<br>".join(f"{_attr(n)}: {_attr(s)}: {_attr(d)}" for n, s, d in r.problems)
        rows.append(f'<tr data-revision="{_attr(r.spec)}" data-platform="{_attr(r.platform)}"><td>{_attr(r.label)}'
                    f'{OUTSIDE_MARK if r.outside_python_range else ""}</td><td>{_attr(r.platform)}</td>'
                    f'<td>{_attr(r.versions)}</td><td>{_attr(", ".join(f"{n} {s}" for s, n in r.counts.items()))}</td>'
                    f'{secs}<td>{_attr("; ".join(r.notes))}{"<br>" if problems and r.notes else ""}{problems}'
                    '</td></tr>')
    parts.append('<h2>Probe runs per revision</h2><table class="avail" id="probe-runs"><thead><tr><th>revision</th>'
                 '<th>platform</th><th>versions</th><th>tests</th><th>prepare s</th><th>probes s</th><th>wall s</th>'
                 f'<th>notes, probes that could not judge</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    groups = []
    for g in deprecations(matrix):
        span = g.labels[0] if len(g.labels) == 1 else f"{g.labels[0]} … {g.labels[-1]}"
        ws = "".join(f"<li><code>{_attr(w.get('category'))}</code> {_attr(w.get('filename'))}"
                     f"{':' + _attr(w.get('lineno')) if len(g.labels) == 1 else ''}: {_attr(w.get('message'))}</li>"
                     for w in g.warnings)
        groups.append(f"<h3>{_attr(span)} ({_attr(g.platform)})</h3><ul>{ws}</ul>")
    none = "<p><em>The probes recorded no deprecation warning from megatron-core.</em></p>"
    parts.append('<h2 id="deprecations">Deprecation warnings per revision</h2>' + ("".join(groups) or none))
    return "\n".join(parts)


def render_html(matrix: Matrix) -> str:
    """The whole page as one string (no external resources)."""
    legend = "".join(
        f'<span data-status="{_attr(name)}"><i style="background:{style(name)[1]}"></i>{_attr(name)}: '
        f'{_attr(style(name)[2])}</span>'
        for name in STATIC_STATUSES
    )
    legend += (f'<span data-status="deprecated"><i style="background:linear-gradient(135deg,#fff 0 6px,#111 6px 7px,'
               f'#2e9e4f 7px)"></i>{DEPRECATED_MARK} deprecated (corner mark): the revision\'s source announces the '
               "row's model class as deprecated (GPTModel: GPTModel IS DEPRECATED, megatron-core 0.19 on); the class "
               "still runs</span>")
    platforms = platforms_in(matrix)
    if platforms:
        legend += (f'<br>Small bars, left to right: probes on {_attr(", ".join(platforms))}. ' + "".join(
            f'<span><i style="background:{bg}"></i>{_attr(name)}</span>' for name, (_, bg, _) in DYNAMIC_STYLE.items())
            + f"<span>black frame: static and dynamic disagree; hatched, {OUTSIDE_MARK}: outside the release's "
            "declared Python range</span>")
    errors = "".join(
        f"<li><code>{_attr(r['spec'])}</code>: {_attr(r['error'])}</li>" for r in matrix.revisions if r.get("error")
    )
    no_family = "" if any(r["kind"] == "family" for r in matrix.rows) else (
        "<p><em>No bridge family is registered yet: only feature rows are shown.</em></p>")
    meta = json.dumps({"generated_at": matrix.generated_at, "tool_version": matrix.tool_version,
                       "revisions": len(matrix.revisions), "rows": len(matrix.rows)})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mcore-compat matrix</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>{_CSS}</style></head>
<body data-meta="{_attr(meta)}">
<h1>mcore-compat matrix</h1>
<div class="meta">Generated {_attr(matrix.generated_at)} by mcore-compat {_attr(matrix.tool_version)}:
{len(matrix.revisions)} revisions × {len(matrix.rows)} rows. Hover a cell for its details; click to pin them.</div>
<div class="legend">{legend}</div>
{no_family}
<div id="details" aria-live="polite">Click a cell to see what it needs.</div>
{_grid(matrix)}
{f"<h2>Revisions that could not be read</h2><ul>{errors}</ul>" if errors else ""}
{_model_classes(matrix)}
{_main_sections(matrix)}
{_dynamic_sections(matrix)}
{render_checkpoint_html(matrix)}
<h2>Feature availability</h2>
{_availability(matrix)}
<div id="tip" role="tooltip"></div>
<script>{_JS}</script>
</body></html>
"""
