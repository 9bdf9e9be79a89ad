"""harness.render with probe results: static / CPU / GPU per cell, disagreements, runs, deprecations."""

from __future__ import annotations

import html
import re

import pytest

from harness.matrix import merge_matrices
from harness.probes.fold import fold_results
from harness.render import render_html, render_matrix_markdown
from harness.render.dynamic import agreement_counts, deprecations, disagreements, is_deprecation, revision_probes
from tests.harness.probes.test_fold import CPU_RESULTS, DEPRECATED, result, static_matrix


@pytest.fixture(scope="module")
def matrix():
    cpu = fold_results(static_matrix(), CPU_RESULTS, platform="cpu",
                       timings={"pypi:0.16.1": {"prepare_s": 2.5, "probe_s": 30.0, "wall_s": 31.0}})
    gpu = fold_results(static_matrix(), [
        result("0.16.1", "family:llama", "failed", {"llama": ("failed", "NCCL logits differ")}, device="cuda"),
        result("0.13.0", "family:llama", "timeout", details="timed out after 300s (process group killed)"),
    ], platform="gpu")
    return merge_matrices([("cpu.json", cpu), ("gpu.json", gpu)])


def test_summaries(matrix):
    assert agreement_counts(matrix) == {"agree": 2, "explained": 2, "disagree": 4}
    found = {(d.row, d.label): d for d in disagreements(matrix)}
    assert found[("llama", "0.16.1")].dynamic == {"cpu": "passed", "gpu": "failed"}
    assert found[("llama", "0.16.1")].details == "gpu: family:llama: NCCL logits differ"
    assert found[("llama", "0.17.0")].outside_python_range and found[("llama", "0.17.0")].agreement == "explained"
    runs = {(r.label, r.platform): r for r in revision_probes(matrix)}
    assert runs[("0.16.1", "cpu")].counts == {"passed": 2, "failed": 1}
    assert runs[("0.16.1", "cpu")].timing["prepare_s"] == 2.5
    assert runs[("0.13.0", "gpu")].problems == [
        ("family:llama", "timeout", "timed out after 300s (process group killed)")]
    groups = deprecations(matrix)
    assert [(g.labels, g.platform, g.warnings) for g in groups] == [(["0.16.1"], "cpu", [DEPRECATED])]
    assert is_deprecation({"category": "UserWarning", "message": "x will be removed in 0.20"})
    assert not is_deprecation({"category": "UserWarning", "message": "tp_group is None"})


def test_markdown_shows_static_cpu_gpu_side_by_side(matrix):
    md = render_matrix_markdown(matrix)
    header = next(line for line in md.splitlines() if line.startswith("| row |"))
    assert header.split("|")[2:-1] == [" 0.13.0 ", " 0.16.1 ", " 0.17.0† "]
    llama = next(line for line in md.splitlines() if line.startswith("| **llama**"))
    assert llama.split("|")[2:-1] == [" ✅ / · / ⏱️‼️ ", " ✅ / ✅ / ❌‼️ ", " ✅ / ⚠️ / ·ℹ️† "]
    assert "Each cell: static / cpu / gpu." in md
    assert "2 cells agree, 2 disagree for a known reason" in md and "### Explained disagreements" in md
    assert "- **mtp** @ 0.13.0: static missing, cpu passed" in md
    assert "| 0.16.1 | cpu | python 3.11.7, mcore 0.16.1 | 2 passed, 1 failed | 2.5 | 30.0 | 31.0 |" in md
    assert "- 0.13.0 (gpu) `family:llama`: timeout: timed out after 300s" in md
    deps = md.split("## Deprecation warnings per revision")[1]
    assert "### 0.16.1 (cpu)" in deps and "`DeprecationWarning` megatron/core/a.py:3: x is deprecated" in deps


def test_html_cells_carry_each_platform(matrix):
    page = render_html(matrix)
    cell = re.search(r'<td class="cell dyn"[^>]*data-row="llama" data-revision="pypi:0.16.1"[^>]*>(.*?)</td>', page)
    assert cell and 'data-status="supported"' in cell.group(0)
    assert 'data-cpu="passed"' in cell.group(0) and 'data-gpu="failed"' in cell.group(0)
    assert 'data-agreement="disagree"' in cell.group(0) and cell.group(1).count('class="p"') == 2
    details = html.unescape(re.search(r'data-details="([^"]*)"', cell.group(0)).group(1))
    assert "gpu: failed" in details and "static vs dynamic: disagree" in details
    outside = re.search(r'<td [^>]*data-revision="pypi:0.17.0"[^>]*>', page).group(0)
    assert 'data-outside-python="true"' in outside
    assert 'id="agreement-counts" data-agree="2" data-explained="2" data-disagree="4"' in page
    assert 'id="probe-runs"' in page and 'id="deprecations"' in page
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=', page)


def test_static_only_matrix_renders_as_before():
    md = render_matrix_markdown(static_matrix())
    assert "Static vs dynamic" not in md and "Each cell:" not in md
    assert next(line for line in md.splitlines() if line.startswith("| **llama**")).count("/") == 0
    page = render_html(static_matrix())
    assert "cell dyn" not in page and 'id="probe-runs"' not in page
