"""harness.probes.skips: a hybrid:<family> probe is not launched where the static scan finds no HybridModel, its
cells say why (skipped, the static verdict kept, no agreement claimed); where HybridModel exists it still runs.

Real introspection of few-file ``path:`` trees (tests/helpers/gpt_model_gone.py): a 0.17.0 tree without the
hybrid modules and a 0.19.2 tree with them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.requirements import Requirements
from harness.introspect import Introspector
from harness.matrix import build_matrix
from harness.probes.fold import fold_results
from harness.probes.skips import NOT_LAUNCHED, comparison_skips, static_skips
from harness.probes.sweep import run_sweep_report
from harness.render import render_html, render_matrix_markdown
from harness.requirements import row_for_requirements
from tests.helpers.gpt_model_gone import mini_tree

HYBRID_MODULES = frozenset({"megatron.core.models.hybrid.hybrid_model", "megatron.core.models.hybrid.hybrid_block"})
TESTS = ["import", "family:llama", "hybrid:llama"]


def llama(model_class: str, extra_field: str | None = None) -> Requirements:
    """llama's rows as the bridge derives them per class (few checks, so the mini trees satisfy them)."""
    fields = {"num_layers", "hidden_size", *([extra_field] if extra_field else [])}
    base: dict = dict(family="llama", config_fields=frozenset(fields),
                      layer_spec_functions=frozenset({"get_gpt_layer_local_spec"}), model_class=model_class)
    if model_class == "gpt":
        base.update(gpt_model_params=frozenset({"vocab_size"}),
                    modules=frozenset({"megatron.core.models.gpt.gpt_model"}))
    else:
        base.update(hybrid_model_params=frozenset({"vocab_size"}), modules=HYBRID_MODULES)
    return Requirements(**base)


@pytest.fixture
def trees(tmp_path: Path) -> dict[str, str]:
    """``path:`` specs: ``old`` (0.17.0, no HybridModel), ``older`` (0.16.1, none either), ``rel`` (0.19.2)."""
    return {"old": f"path:{mini_tree(tmp_path / 'old', version='0.17.0', hybrid=False)}",
            "older": f"path:{mini_tree(tmp_path / 'older', version='0.16.1', hybrid=False)}",
            "rel": f"path:{mini_tree(tmp_path / 'rel')}"}


def _matrix(tmp_path: Path, specs: list[str], extra_field: str | None = None):
    introspector = Introspector(tmp_path / "cache", facts_dir=tmp_path / "facts")
    rows = [row_for_requirements(llama("gpt")), row_for_requirements(llama("hybrid", extra_field))]
    m = build_matrix([introspector.introspect(s) for s in specs], rows)
    return m, [r["spec"] for r in m.revisions]


def test_hybrid_probe_skipped_only_where_hybrid_model_is_absent(trees, tmp_path):
    m, (old, rel) = _matrix(tmp_path, [trees["old"], trees["rel"]])
    assert m.cell("hybrid:llama", old)["status"] == "missing"
    skips = static_skips(m, [old, rel], TESTS)
    assert list(skips) == [(old, "hybrid:llama")]  # family:llama and import run at both, hybrid:llama at 0.19.2
    assert skips[(old, "hybrid:llama")].startswith("not run: HybridModel is absent at this revision (static scan")


def test_a_row_missing_for_another_reason_is_still_probed(trees, tmp_path):
    """A missing config field is a prediction the probe checks (a pass there would be a disagreement)."""
    m, (rel,) = _matrix(tmp_path, [trees["rel"]], extra_field="no_such_field_anywhere")
    assert m.cell("hybrid:llama", rel)["status"] == "missing"
    assert static_skips(m, [rel], TESTS) == {}


def test_run_skips_at_the_target_only_where_the_baseline_skips_too(trees, tmp_path):
    m, (older, old, rel) = _matrix(tmp_path, [trees["older"], trees["old"], trees["rel"]])
    assert set(comparison_skips(m, old, rel, TESTS)) == {(old, "hybrid:llama")}
    assert set(comparison_skips(m, older, old, TESTS)) == {(older, "hybrid:llama"), (old, "hybrid:llama")}
    # a target that lost HybridModel still runs the probe the baseline passed: the break must show dynamically
    assert comparison_skips(m, rel, old, TESTS) == {}


def test_sweep_does_not_launch_a_skipped_probe_and_the_cell_says_why(trees, tmp_path):
    m, (old,) = _matrix(tmp_path, [trees["old"]])
    cache = tmp_path / "probe-cache"
    skips = static_skips(m, [old], ["hybrid:llama"])
    report = run_sweep_report([old], tests=["hybrid:llama"], cache_dir=cache, progress=False, skips=skips)
    (result,) = report.results
    assert result.status == "skipped" and result.meta["not_launched"] == NOT_LAUNCHED
    assert result.details == skips[(old, "hybrid:llama")] and not result.cached
    assert report.new_probes == 1 and report.revisions[0].prepare_s == 0.0  # never prepared, never run
    assert not list(cache.rglob("probes/**/*.json"))  # nothing cached: the static scan decides every time

    cell = fold_results(m, report.results, platform="cpu").cell("hybrid:llama", old)
    assert cell["status"] == "missing"  # the static verdict stays, beside the reason the probe did not run
    dyn = cell["dynamic"]["cpu"]
    assert dyn["status"] == "skipped" and "HybridModel is absent" in dyn["details"]
    assert dyn["agreement"] is None and "agreement" not in cell  # not run: no claim of agreement
    folded = fold_results(m, report.results, platform="cpu")
    assert "HybridModel is absent at this revision" in render_html(folded)
    assert "➖" in next(x for x in render_matrix_markdown(folded).splitlines() if x.startswith("| **hybrid:llama**"))


@pytest.mark.slow  # prepares the tree and starts a probe: 29 s at load 9, 380 s at load 30 (shared box)
def test_sweep_launches_the_probe_where_hybrid_model_exists(trees, tmp_path):
    m, (old, rel) = _matrix(tmp_path, [trees["old"], trees["rel"]])
    cache = tmp_path / "probe-cache"
    # a short limit: the subprocess is started (and killed on time, or fails importing the few-file tree)
    report = run_sweep_report([old, rel], tests=["hybrid:llama"], cache_dir=cache, progress=False, timeout_s=3,
                              skips=static_skips(m, [old, rel], ["hybrid:llama"]))
    by_spec = {r.spec: r for r in report.results}
    assert by_spec[old].status == "skipped"
    launched = by_spec[rel]
    assert launched.status in ("timeout", "error") and "not_launched" not in launched.meta
    assert launched.duration_s > 0 and report.revisions[1].prepare_s >= 0
    assert len(list(cache.rglob("probes/**/*.json"))) == 1  # the launched probe's result, cached
