"""harness.render: Markdown grid + details, features table, self-contained HTML with data attributes."""

from __future__ import annotations

import html
import re

import pytest

from harness.features import feature_by_name
from harness.matrix import build_matrix
from harness.render import REPORT_FILES, render_features_markdown, render_html, render_matrix_markdown, write_reports
from harness.requirements import requirement_rows


@pytest.fixture(scope="module")
def matrix(pypi_scans, introspector, synthetic_repo):
    rows = requirement_rows([], [feature_by_name("mtp"), feature_by_name("uneven_pipeline")])
    broken = introspector.introspect("git:broken", repo=str(synthetic_repo))
    return build_matrix([*pypi_scans.values(), broken], rows)


def test_markdown_grid_and_details(matrix):
    md = render_matrix_markdown(matrix)
    header = next(line for line in md.splitlines() if line.startswith("| row |"))
    assert header.count("|") == len(matrix.revisions) + 2
    mtp = next(line for line in md.splitlines() if line.startswith("| **mtp**"))
    assert mtp.split("|")[2:-1] == [" ❌ ", " ❌ ", " ✅ ", " ✅ ", " ✅ ", " ⚠️ "]
    assert "`field:mtp_num_layers`" in md  # the exact missing attributes
    assert "git:broken" in md and "Revisions that could not be read" in md
    assert "No bridge family is registered yet" in md


def test_features_markdown(matrix):
    md = render_features_markdown(matrix)
    row = next(line for line in md.splitlines() if line.startswith("| mtp |"))
    assert row.split("|")[3].strip() == "0.13.0"


def test_html_cells_carry_status_and_details(matrix):
    page = render_html(matrix)
    cells = re.findall(r'<td class="cell"[^>]*>', page)
    assert len(cells) == len(matrix.rows) * len(matrix.revisions)
    cell = next(c for c in cells if 'data-row="mtp"' in c and 'data-revision="pypi:0.10.0"' in c)
    assert 'data-status="missing"' in cell
    details = html.unescape(re.search(r'data-details="([^"]*)"', cell).group(1))
    assert "missing: field:mtp_num_layers" in details
    assert re.search(r'data-revision="git:broken" data-status="error"', page)


def test_html_is_self_contained(matrix):
    page = render_html(matrix)
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=', page)
    assert "<style>" in page and "<script>" in page and "addEventListener('click'" in page
    assert 'id="availability"' in page


def test_write_reports(matrix, tmp_path):
    paths = write_reports(matrix, tmp_path / "out")
    assert [p.name for p in paths] == list(REPORT_FILES) and all(p.stat().st_size > 0 for p in paths)


@pytest.fixture(scope="module")
def partial_matrix(pypi_scans):
    from bridge.requirements import Requirements, Variant
    from harness.requirements import row_for_requirements

    fields = frozenset({"num_layers", "hidden_size"})
    fam = Requirements(family="llama_like", config_fields=fields, gpt_model_params=frozenset({"vocab_size", "rope_scaling_factor"}),
                       modules=frozenset({"megatron.core.models.gpt.gpt_model"}), variants=(
                           Variant("v0(base)", fields, frozenset({"vocab_size"})),
                           Variant("v1(scaled)", fields, frozenset({"vocab_size", "rope_scaling_factor"}))))
    return build_matrix([pypi_scans[v] for v in ("0.10.0", "0.11.0")], [row_for_requirements(fam)])


def test_partial_cells_in_json_markdown_and_html(partial_matrix):
    cell = partial_matrix.cell("llama_like", "pypi:0.10.0")
    assert cell["status"] == "partial"
    assert cell["variants"]["v1(scaled)"] == {"status": "missing", "missing": ["gpt_param:rope_scaling_factor"],
                                              "renamed": {}}
    assert partial_matrix.rows[0]["variants"]["v1(scaled)"][-1] == "module:megatron.core.models.gpt.gpt_model"
    md = render_matrix_markdown(partial_matrix)
    assert "🌓 partial" in md.split("\n\n")[2]  # the legend
    assert re.search(r"\| \*\*llama_like\*\* \(family\) \| 🌓 \| ✅ \|", md)
    assert ("- 0.10.0: 🌓 partial: v0(base): runs; v1(scaled): needs gpt_param:rope_scaling_factor (runs from 0.11.0)"
            in md)
    page = render_html(partial_matrix)
    assert '<span data-status="partial"><i style="background:#3f9fb5">' in page  # own colour, own legend entry
    td = re.search(r'<td class="cell"[^>]*data-revision="pypi:0.10.0"[^>]*>', page).group(0)
    assert 'data-status="partial"' in td and "background:#3f9fb5" in td
    assert "v1(scaled): needs gpt_param:rope_scaling_factor (runs from 0.11.0)" in html.unescape(td)
