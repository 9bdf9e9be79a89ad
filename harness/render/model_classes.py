"""What both renderers show of the model classes: each family on GPTModel and on HybridModel, release by release.

A family has a row per model class (:data:`harness.requirements.MODEL_CLASS_ROWS`: ``llama`` on GPTModel,
``hybrid:llama`` on HybridModel); a row file without ``model_class`` (written before model classes) is a
family's GPTModel row. :func:`model_class_summaries` reads, per family: the first release where it runs on
each class (static verdict supported, renamed or partial), the first release where its HybridModel probe
passed (per platform), the revisions whose GPTModel announces its deprecation (the cells' ``deprecated``
marker) and those, after the family ran on GPTModel, whose GPTModel row lacks GPTModel's module (an upstream
deletion shows here, ``main@...`` and ``path:`` columns included). Pure reads of a :class:`harness.matrix.Matrix`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.introspect import MODEL_CLASS_PATHS
from harness.matrix import Matrix
from harness.render.common import column_label, platforms_in

__all__ = ["DEPRECATED_MARK", "MODEL_CLASS_LABELS", "ModelClassSummary", "model_class_summaries", "probed_text",
           "row_model_class", "span"]

DEPRECATED_MARK = "⌛"
"""Marks a cell whose revision announces the row's model class as deprecated (GPTModel from 0.19)."""

MODEL_CLASS_LABELS = {"gpt": "GPTModel", "hybrid": "HybridModel"}

_RUNS = ("supported", "renamed", "partial")
_GPT_MODULE_CHECK = "module:" + MODEL_CLASS_PATHS["GPTModel"].removesuffix(".py").replace("/", ".")


def row_model_class(row: dict[str, Any]) -> str | None:
    """``"gpt"`` / ``"hybrid"`` of a row (a family row without the key: ``"gpt"``); None for other rows."""
    if row.get("model_class"):
        return str(row["model_class"])
    return "gpt" if row.get("kind") == "family" else None


@dataclass(frozen=True)
class ModelClassSummary:
    """One family across the matrix's revisions on both model classes (labels are column labels)."""

    family: str
    gpt_row: str | None
    hybrid_row: str | None
    gpt_first: str | None
    hybrid_first: str | None
    hybrid_first_partial: bool
    hybrid_probed: dict[str, str | None]
    hybrid_probe_counts: dict[str, tuple[int, int]]
    gpt_deprecated: tuple[str, ...]
    gpt_gone: tuple[str, ...]


def span(labels: tuple[str, ...] | list[str]) -> str:
    """``a``, ``a … z`` for consecutive columns, ``—`` for none."""
    if not labels:
        return "—"
    return labels[0] if len(labels) == 1 else f"{labels[0]} … {labels[-1]}"


def _first_release(matrix: Matrix, row: str | None) -> tuple[str | None, bool]:
    """(first release where ``row`` runs, whether it is only partial there)."""
    for rev in matrix.released() if row else []:
        cell = matrix.cell(row, rev["spec"])
        if cell and cell["status"] in _RUNS:
            return str(rev["version"]), cell["status"] == "partial"
    return None, False


def _first_passed(matrix: Matrix, row: str | None, platform: str) -> str | None:
    for rev in matrix.released() if row else []:
        dyn = ((matrix.cell(row, rev["spec"]) or {}).get("dynamic") or {}).get(platform) or {}
        if dyn.get("status") == "passed":
            return str(rev["version"])
    return None


def _probe_counts(matrix: Matrix, row: str | None, platform: str) -> tuple[int, int]:
    """(releases where the row's probe passed, releases probed) on ``platform``."""
    dyn = [((matrix.cell(row, r["spec"]) or {}).get("dynamic") or {}).get(platform) for r in matrix.released()] if row \
        else []
    return sum(1 for d in dyn if d and d.get("status") == "passed"), sum(1 for d in dyn if d and d.get("status"))


def probed_text(summary: "ModelClassSummary", platform: str) -> str:
    """``0.18.2 (2/2 probed)``: first release whose HybridModel probe passed, passed / probed releases."""
    passed, probed = summary.hybrid_probe_counts.get(platform, (0, 0))
    if not probed:
        return "not probed"
    return f"{summary.hybrid_probed.get(platform) or 'never'} ({passed}/{probed} probed pass)"


def _gpt_columns(matrix: Matrix, row: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(columns where GPTModel is deprecated, columns after one where the row ran that lack GPTModel)."""
    deprecated: list[str] = []
    gone: list[str] = []
    ran = False
    for rev in matrix.revisions if row else []:
        cell = matrix.cell(row, rev["spec"])
        if rev.get("error") or not cell or cell["status"] == "error":
            continue
        if cell.get("deprecated"):
            deprecated.append(column_label(rev))
        if ran and _GPT_MODULE_CHECK in (cell.get("missing") or []):
            gone.append(column_label(rev))
        ran = ran or cell["status"] in _RUNS
    return tuple(deprecated), tuple(gone)


def model_class_summaries(matrix: Matrix) -> list[ModelClassSummary]:
    """One summary per family that has a row on either model class, in the order of the GPTModel rows."""
    rows: dict[str, dict[str, str]] = {}
    for row in matrix.rows:
        model_class = row_model_class(row)
        if row.get("kind") != "family" or model_class not in MODEL_CLASS_LABELS:
            continue
        family = row["name"].partition(":")[2] if model_class != "gpt" else row["name"]
        rows.setdefault(family, {})[model_class] = row["name"]
    platforms = platforms_in(matrix)
    out = []
    for family, by_class in rows.items():
        gpt, hybrid = by_class.get("gpt"), by_class.get("hybrid")
        deprecated, gone = _gpt_columns(matrix, gpt)
        hybrid_first, partial = _first_release(matrix, hybrid)
        out.append(ModelClassSummary(
            family=family, gpt_row=gpt, hybrid_row=hybrid, gpt_first=_first_release(matrix, gpt)[0],
            hybrid_first=hybrid_first, hybrid_first_partial=partial,
            hybrid_probed={p: _first_passed(matrix, hybrid, p) for p in platforms},
            hybrid_probe_counts={p: _probe_counts(matrix, hybrid, p) for p in platforms},
            gpt_deprecated=deprecated, gpt_gone=gone,
        ))
    return out
