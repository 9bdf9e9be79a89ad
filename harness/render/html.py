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
from harness.render.common import STATUS_STYLE, cell_text, column_label, style

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


def _grid(matrix: Matrix) -> str:
    revs = matrix.revisions
    head = "".join(
        f'<th title="{_attr(r["spec"])} {_attr(r.get("commit") or "")}">{_attr(column_label(r))}</th>'
        for r in revs
    )
    body = []
    for row in matrix.rows:
        tds = []
        for rev in revs:
            cell = matrix.cell(row["name"], rev["spec"])
            status = cell["status"] if cell else "absent"
            colour = style(status)[1] if cell else "#eceef1"
            key = f'{row["name"]}@{rev["spec"]}'
            tds.append(
                f'<td class="cell" tabindex="0" style="background:{colour}" data-key="{_attr(key)}" '
                f'data-row="{_attr(row["name"])}" data-revision="{_attr(rev["spec"])}" '
                f'data-status="{_attr(status)}" data-details="{_attr(cell_text(row["name"], rev, cell))}"></td>'
            )
        body.append(
            f'<tr><th class="rowname" title="{_attr(row.get("description", ""))}">{_attr(row["name"])} '
            f'<small>{_attr(row["kind"])}</small></th>{"".join(tds)}</tr>'
        )
    return (f'<div class="wrap"><table class="grid" id="grid"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


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


def render_html(matrix: Matrix) -> str:
    """The whole page as one string (no external resources)."""
    legend = "".join(
        f'<span><i style="background:{bg}"></i>{_attr(name)}: {_attr(desc)}</span>'
        for name, (_, bg, desc) in list(STATUS_STYLE.items())[:4]
    )
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
<h2>Feature availability</h2>
{_availability(matrix)}
<div id="tip" role="tooltip"></div>
<script>{_JS}</script>
</body></html>
"""
