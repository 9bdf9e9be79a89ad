"""Renderers of a :class:`harness.matrix.Matrix`: Markdown and a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from harness.cache import atomic_write_text
from harness.matrix import Matrix
from harness.render.html import render_html
from harness.render.markdown import render_features_markdown, render_matrix_markdown

__all__ = ["REPORT_FILES", "render_features_markdown", "render_html", "render_matrix_markdown", "write_reports"]

REPORT_FILES = ("matrix.json", "matrix.md", "matrix.html", "features.md")


def write_reports(matrix: Matrix, out_dir: Path) -> list[Path]:
    """Write :data:`REPORT_FILES` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in REPORT_FILES]
    matrix.save(paths[0])
    atomic_write_text(paths[1], render_matrix_markdown(matrix))
    atomic_write_text(paths[2], render_html(matrix))
    atomic_write_text(paths[3], render_features_markdown(matrix))
    return paths
