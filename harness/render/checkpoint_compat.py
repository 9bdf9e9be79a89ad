"""The "checkpoint: written by X, read by Y" tables, in Markdown and HTML, from ``matrix.checkpoint_compat``.

One grid per family: a row per writer release, a column per reader release, the cell's verdict as a symbol
(:data:`CKPT_STYLE`, its own legend and colours, apart from the matrix's static statuses). Pairs outside the
grid (:mod:`harness.probes.ckpt_grid`) are blank. Below the grids: every cell that did not simply load, with
its details and first differing key, and the GPTModel -> HybridModel (``gpt_checkpoint_interop``) verdicts of
the 0.19+ readers. Pure reads of a :class:`harness.matrix.Matrix`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from harness.matrix import Matrix
from harness.versions import version_key

__all__ = ["CKPT_STYLE", "CheckpointGrid", "checkpoint_grids", "render_checkpoint_html", "render_checkpoint_markdown"]

CKPT_STYLE: dict[str, tuple[str, str, str]] = {
    "loads": ("✅", "#2e9e4f", "loads; logits equal HF's within the parity bound"),
    "loads_with_warnings": ("⚠️", "#c9a227", "loads, but MCore warned while loading (or _extra_state entries differ)"),
    "loads_after_migrate": ("🔧", "#3a7bd5", "fails as written; loads after mcore-compat migrate-ckpt"),
    "logits_differ": ("≠", "#e07b39", "loads, but the logits differ from HF's"),
    "fails": ("❌", "#c0392b", "does not load (first missing / unexpected key or shape in the details)"),
    "not_run": ("·", "#d0d4da", "not run: the writer (or reader) release cannot build the family"),
    "error": ("⁉", "#7d3c98", "the probe could not judge it (writer crashed, timeout)"),
}
_UNKNOWN = ("?", "#eeeeee", "unknown verdict")


@dataclass(frozen=True)
class CheckpointGrid:
    """One family's cells on one platform: ``cells[(writer, reader)]``."""

    family: str
    platform: str
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    cells: dict[tuple[str, str], dict[str, Any]]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cells.values():
            out[c["verdict"]] = out.get(c["verdict"], 0) + 1
        return out


def checkpoint_grids(matrix: Matrix) -> list[CheckpointGrid]:
    """One grid per (family, platform), families in name order."""
    by: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    for c in matrix.checkpoint_compat:
        by.setdefault((c["family"], c.get("platform", "cpu")), {})[(c["writer"], c["reader"])] = c
    grids = []
    for (family, platform), cells in sorted(by.items()):
        writers = tuple(sorted({w for w, _ in cells}, key=version_key))
        readers = tuple(sorted({r for _, r in cells}, key=version_key))
        grids.append(CheckpointGrid(family, platform, writers, readers, cells))
    return grids


def _symbol(verdict: str) -> str:
    return CKPT_STYLE.get(verdict, _UNKNOWN)[0]


def _explain(cell: dict[str, Any]) -> str:
    parts = [f"{cell['family']}: written by {cell['writer']}, read by {cell['reader']}: {cell['verdict']}"]
    if cell.get("first_difference"):
        parts.append(f"first difference: {cell['first_difference']}")
    for name in ("bridge", "mcore", "migrated", "hybrid_interop", "hybrid_migrate"):
        if isinstance(cell.get(name), dict):
            parts.append(f"{name}: {cell[name].get('verdict')} ({cell[name].get('details', '')})")
    if not any(isinstance(cell.get(n), dict) for n in ("bridge", "mcore")) and cell.get("details"):
        parts.append(str(cell["details"]))
    return "\n".join(parts)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_checkpoint_markdown(matrix: Matrix) -> list[str]:
    """The Markdown section (no lines when the matrix has no checkpoint cells)."""
    grids = checkpoint_grids(matrix)
    if not grids:
        return []
    out = ["## Checkpoint: written by X, read by Y", "",
           "Each family's tiny checkpoint is written with the bridge's `torch_dist` writer under release X (rows) "
           "and loaded under release Y (columns), by `load_megatron_model` and by plain MCore "
           "`dist_checkpointing.load`; the logits are compared with HF's. Blank: not in the grid.", "",
           "Legend: " + " · ".join(f"{s} {name}: {meaning}" for name, (s, _, meaning) in CKPT_STYLE.items()), ""]
    notes: dict[tuple[str, str, str, str], list[str]] = {}  # (family, writer, verdict, text) -> readers
    interop: list[str] = []
    for g in grids:
        counts = ", ".join(f"{n} {v}" for v, n in sorted(g.counts().items()))
        out += [f"### {g.family} ({g.platform}): {counts}", "",
                "| written by \\ read by | " + " | ".join(g.readers) + " |", "|" + "---|" * (len(g.readers) + 1)]
        for w in g.writers:
            row = [_symbol(g.cells[(w, r)]["verdict"]) if (w, r) in g.cells else " " for r in g.readers]
            out.append(f"| **{w}** | " + " | ".join(row) + " |")
        out.append("")
        for (w, r), c in sorted(g.cells.items(), key=lambda kv: (version_key(kv[0][1]), version_key(kv[0][0]))):
            if c["verdict"] != "loads":
                text = _md(_explain(c).partition(chr(10))[2] or c.get("details", ""))[:400]
                notes.setdefault((g.family, w, c["verdict"], text), []).append(r)
            if isinstance(c.get("hybrid_interop"), dict):
                h, m = c["hybrid_interop"], c.get("hybrid_migrate") or {}
                interop.append(f"| {g.family} | {w} | {r} | {_symbol(h.get('verdict', ''))} {h.get('verdict')} | "
                               f"{_md(h.get('details', ''))[:160]} | {_symbol(m.get('verdict', ''))} "
                               f"{m.get('verdict', '')} | {_md(m.get('details', ''))[:240]} |")
    if interop:
        out += ["### GPTModel checkpoint -> HybridModel (0.19+)", "",
                "MCore's own load-time translation (`gpt_checkpoint_interop`), and the bridge's HybridModel loading "
                "the GPT layout as it is (it asks for other keys) and after `mcore-compat migrate-ckpt "
                "--model-class hybrid`.", "",
                "| family | written by | read by | gpt_checkpoint_interop | details | native / migrate-ckpt | details |",
                "|---|---|---|---|---|---|---|", *interop, ""]
    if notes:
        lines = [f"- {family} {w} → {', '.join(readers)}: {_symbol(verdict)} {verdict}: {text}"
                 for (family, w, verdict, text), readers in notes.items()]
        out += ["### Cells that did not simply load", "", "One line per writer and finding, with the readers it holds for.",
                "", *lines, ""]
    return out


def _attr(text: object) -> str:
    return html.escape(str(text), quote=True)


def render_checkpoint_html(matrix: Matrix) -> str:
    """The HTML section (empty when the matrix has no checkpoint cells); cells use the page's ``td.cell`` tips."""
    grids = checkpoint_grids(matrix)
    if not grids:
        return ""
    legend = "".join(f'<span data-verdict="{_attr(name)}"><i style="background:{bg}"></i>{_attr(s)} {_attr(name)}: '
                     f"{_attr(meaning)}</span>" for name, (s, bg, meaning) in CKPT_STYLE.items())
    parts = ['<h2 id="checkpoint-compat">Checkpoint: written by X, read by Y</h2>',
             "<p>Each family's tiny checkpoint is written with the bridge's torch_dist writer under release X (rows) "
             "and loaded under release Y (columns), by load_megatron_model and by plain MCore "
             "dist_checkpointing.load; logits compared with HF's. Blank: not in the grid.</p>",
             f'<div class="legend ckpt-legend">{legend}</div>']
    for g in grids:
        head = "".join(f"<th>{_attr(r)}</th>" for r in g.readers)
        rows = []
        for w in g.writers:
            tds = []
            for r in g.readers:
                c = g.cells.get((w, r))
                if c is None:
                    tds.append('<td class="ckpt-blank"></td>')
                    continue
                bg = CKPT_STYLE.get(c["verdict"], _UNKNOWN)[1]
                mark = "H" if isinstance(c.get("hybrid_interop"), dict) else ""
                tds.append(f'<td class="cell ckpt" tabindex="0" style="background:{bg}" '
                           f'data-row="{_attr("ckpt_compat:" + g.family + "@" + w)}" data-revision="{_attr(r)}" '
                           f'data-status="{_attr(c["verdict"])}" data-details="{_attr(_explain(c))}">{mark}</td>')
            rows.append(f'<tr><th class="rowname">{_attr(w)}</th>{"".join(tds)}</tr>')
        counts = ", ".join(f"{n} {v}" for v, n in sorted(g.counts().items()))
        parts.append(f'<h3>{_attr(g.family)} ({_attr(g.platform)}): {_attr(counts)}</h3>'
                     f'<table class="grid ckpt-grid" data-family="{_attr(g.family)}"><thead><tr>'
                     f'<th>written by \\ read by</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    parts.append("<p class=\"muted\">H: the cell also records MCore's GPTModel -> HybridModel load-time translation "
                 "(gpt_checkpoint_interop, 0.19+ readers, dense families); hover for its verdict.</p>")
    return "\n".join(parts)
