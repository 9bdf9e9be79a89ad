"""The matrix's model classes: GPTModel / HybridModel read from the sources, a family's row on each, GPTModel's
deprecation marker, the "GPTModel is gone" revision, probe results on HybridModel rows, and the reports.

Fast cases run the real introspector on few-file ``path:`` trees (tests/helpers/gpt_model_gone.py); the
``network`` cases read real releases (0.17.0, 0.18.2, 0.19.2 and 0.19.2 with GPTModel deleted) with every
bridge family's derived requirements.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.requirements import Requirements
from harness.introspect import Introspection, Introspector
from harness.matrix import Matrix, build_matrix
from harness.probes.fold import fold_results
from harness.probes.runner import ProbeResult
from harness.render import render_html, render_matrix_markdown
from harness.render.common import column_label
from harness.render.model_classes import model_class_summaries
from harness.requirements import requirement_rows, row_for_feature, row_for_requirements
from harness.features import FEATURES
from tests.helpers.gpt_model_gone import copy_without_gpt_model, delete_gpt_model, mini_tree

GPT_MODULE = "megatron.core.models.gpt.gpt_model"
HYBRID_MODULES = frozenset({"megatron.core.models.hybrid.hybrid_model", "megatron.core.models.hybrid.hybrid_block",
                            "megatron.core.ssm.mlp_layer"})


def demo(model_class: str = "gpt", **kw) -> Requirements:
    """A family's requirements as the bridge derives them for each class (gpt: GPTModel arguments, hybrid:
    HybridModel arguments and the hybrid build's modules)."""
    base: dict = dict(family="demo", config_fields=frozenset({"num_layers", "hidden_size"}),
                      layer_spec_functions=frozenset({"get_gpt_layer_local_spec"}), model_class=model_class)
    if model_class == "gpt":
        base.update(gpt_model_params=frozenset({"vocab_size", "max_sequence_length"}), modules=frozenset({GPT_MODULE}))
    else:
        base.update(hybrid_model_params=frozenset({"vocab_size", "hybrid_stack_spec", "hybrid_layer_pattern"}),
                    modules=HYBRID_MODULES)
    base.update(kw)
    return Requirements(**base)


ROWS = [row_for_requirements(demo("gpt")), row_for_requirements(demo("hybrid"))] + [
    row_for_feature(f) for f in FEATURES if f.name in ("gpt_model", "hybrid_model")]


@pytest.fixture
def scan(tmp_path: Path):
    introspector = Introspector(tmp_path / "cache", facts_dir=tmp_path / "facts")

    def scan_tree(name: str, **kw) -> Introspection:
        tree = mini_tree(tmp_path / name, **kw)
        if name.startswith("gone"):
            delete_gpt_model(tree)
        return introspector.introspect(f"path:{tree}")

    return scan_tree


def test_introspection_reads_both_model_classes_and_the_deprecation_notice(scan):
    intro = scan("rel")
    gpt, hybrid = intro.model_class("GPTModel"), intro.model_class("HybridModel")
    assert gpt["deprecation"].startswith("GPTModel IS DEPRECATED")  # not forward()'s inference_params notice
    assert gpt["params"] == ["config", "transformer_layer_spec", "vocab_size", "max_sequence_length"]
    assert hybrid["deprecation"] is None and "hybrid_layer_pattern" in hybrid["params"]
    assert scan("plain", gpt_deprecated=False).model_class("GPTModel")["deprecation"] is None
    assert scan("old", version="0.17.0", hybrid=False).model_class("HybridModel") is None
    assert scan("gone").model_class("GPTModel") is None
    assert "model_classes" in intro.to_json()


def test_family_rows_per_model_class_and_the_deprecated_marker(scan):
    revs = [scan("old", version="0.17.0", hybrid=False, gpt_deprecated=False), scan("rel")]
    m = build_matrix(revs, ROWS)
    old, new = (r.revision.spec for r in revs)
    assert [r["name"] for r in m.rows[:2]] == ["demo", "hybrid:demo"]
    assert [r.get("model_class") for r in m.rows] == ["gpt", "hybrid", "gpt", "hybrid"]
    assert m.cell("demo", old)["status"] == "supported" and "deprecated" not in m.cell("demo", old)
    assert m.cell("demo", new)["deprecated"].startswith("GPTModel IS DEPRECATED")
    assert m.cell("gpt_model", new)["deprecated"] and "deprecated" not in m.cell("hybrid:demo", new)
    # before HybridModel: its module is what is missing (its parameters are implied, not listed)
    assert m.cell("hybrid:demo", old)["status"] == "missing"
    assert set(m.cell("hybrid:demo", old)["missing"]) == {f"module:{x}" for x in HYBRID_MODULES}
    assert m.cell("hybrid:demo", new)["status"] == "supported"


def test_a_hybrid_parameter_upstream_renames_is_missing(scan):
    row = row_for_requirements(demo("hybrid", hybrid_model_params=frozenset({"hybrid_override_pattern"})))
    cell = build_matrix([scan("rel")], [row]).cells
    (verdict,) = cell.values()
    assert verdict["status"] == "missing" and verdict["missing"] == ["hybrid_param:hybrid_override_pattern"]


def test_gpt_model_gone_is_flagged_while_hybrid_rows_stay_supported(scan):
    rel, gone = scan("rel"), scan("gone")
    m = build_matrix([rel, gone], ROWS)
    spec = gone.revision.spec
    assert m.cell("demo", spec)["status"] == "missing" and f"module:{GPT_MODULE}" in m.cell("demo", spec)["missing"]
    assert m.cell("gpt_model", spec)["status"] == "missing"
    assert m.cell("hybrid:demo", spec)["status"] == m.cell("hybrid_model", spec)["status"] == "supported"
    (summary,) = model_class_summaries(m)
    assert summary.gpt_gone == (column_label(m.revisions[1]),) and summary.gpt_deprecated == (column_label(
        m.revisions[0]),)
    md = render_matrix_markdown(m)
    line = next(x for x in md.splitlines() if x.startswith("| demo |"))
    assert summary.gpt_gone[0] in line and "0.19.2" in line  # deprecated in 0.19.2, gone at the path: column


def test_reports_show_both_classes_with_a_legend(scan):
    m = build_matrix([scan("old", version="0.17.0", hybrid=False, gpt_deprecated=False), scan("rel")], ROWS)
    for rev in m.revisions:
        rev["kind"] = "pypi"
    md = render_matrix_markdown(m)
    assert "### Families on GPTModel" in md and "### Families on HybridModel" in md and "## Model classes" in md
    assert "⌛ the revision's source announces" in md
    assert next(x for x in md.splitlines() if x.startswith("| **demo**")).endswith("✅⌛ |")
    assert "| **hybrid:demo** (family, HybridModel) | ❌ | ✅ |" in md
    assert "| demo | 0.17.0 | 0.19.2 | — | 0.19.2 |" in md
    html = render_html(m)
    assert 'id="model-classes"' in html and 'data-status="deprecated"' in html
    assert html.count(' data-deprecated="true"') == 2  # demo and gpt_model at 0.19.2 (and the CSS rule)
    assert 'data-group="Families on GPTModel"' in html


def test_probe_results_fold_into_the_hybrid_row(scan):
    intro = scan("rel")
    m = build_matrix([intro], ROWS)
    m.revisions[0]["kind"] = "pypi"
    spec = intro.revision.spec
    result = ProbeResult(spec, "hybrid:demo", "passed", rows={"hybrid:demo": {"status": "passed", "details": "ok"}},
                         meta={"mcore_version": "0.19.2", "device": "cpu"})
    folded = fold_results(m, [result], platform="cpu")
    cell = folded.cell("hybrid:demo", spec)
    assert cell["dynamic"]["cpu"]["status"] == "passed" and cell["agreement"] == "agree"
    assert model_class_summaries(folded)[0].hybrid_probed == {"cpu": "0.19.2"}
    assert "| 0.19.2 (1/1 probed pass) |" in render_matrix_markdown(folded)
    assert "| HybridModel probe passes from (cpu) |" in render_matrix_markdown(folded)


def test_a_matrix_written_before_model_classes_still_loads(scan):
    m = build_matrix([scan("rel")], ROWS)
    data = json.loads(m.dumps())
    for row in data["rows"]:
        row.pop("model_class", None)
    for cell in data["cells"]:
        cell.pop("deprecated", None)
    data["rows"] = [r for r in data["rows"] if not r["name"].startswith("hybrid")]
    old = Matrix.from_json(data)
    (summary,) = model_class_summaries(old)  # a family row without model_class is its GPTModel row
    assert summary.gpt_row == "demo" and summary.hybrid_row is None and summary.gpt_deprecated == ()
    assert "### Families on GPTModel" in render_matrix_markdown(old)


# ---------------------------------------------------------------- real releases, every bridge family

@pytest.fixture(scope="module")
def family_rows():
    return requirement_rows()


def test_real_releases_hybrid_from_0_18_gpt_deprecated_in_0_19_and_gone(introspector, family_rows, tmp_path,
                                                                        archive_cache):
    from harness.probes.envs import prepare_revision

    prepared = prepare_revision("pypi:0.19.2", cache_dir=archive_cache)
    assert not prepared.error, prepared.error
    gone_tree = copy_without_gpt_model(Path(prepared.pythonpath[0]), tmp_path / "gpt-model-gone")
    intros = [introspector.introspect(s) for s in ("pypi:0.17.0", "pypi:0.18.2", "pypi:0.19.2", f"path:{gone_tree}")]
    m = build_matrix(intros, family_rows)
    specs = [i.revision.spec for i in intros]
    families = [r["name"] for r in m.rows if r.get("model_class") == "gpt" and r["kind"] == "family"]
    assert len(families) >= 13
    for fam in families:
        gpt = [m.cell(fam, s) for s in specs]
        hybrid = [m.cell(f"hybrid:{fam}", s) for s in specs]
        assert [c["status"] for c in hybrid[:3]] == ["missing", "supported", "supported"], fam
        assert [bool(c.get("deprecated")) for c in gpt] == [False, False, True, False], fam
        assert gpt[2]["status"] in ("supported", "partial") and gpt[3]["status"] == "missing", fam
        assert f"module:{GPT_MODULE}" in gpt[3]["missing"], fam
        assert hybrid[3]["status"] == hybrid[2]["status"] == "supported", fam  # HybridModel unaffected
    gone_label = column_label(m.revisions[3])
    for summary in model_class_summaries(m):
        assert summary.gpt_deprecated == ("0.19.2",) and summary.gpt_gone == (gone_label,), summary
        assert summary.hybrid_first == "0.18.2", summary


def test_the_harness_names_the_bridge_model_classes():
    from bridge.compat import MODEL_CLASS_SOURCES
    from harness.introspect import MODEL_CLASS_PATHS, MODEL_CLASSES

    assert MODEL_CLASSES == {mc: cls for mc, (_, cls) in MODEL_CLASS_SOURCES.items()}
    assert {cls: module.replace(".", "/") + ".py" for module, cls in MODEL_CLASS_SOURCES.values()} == MODEL_CLASS_PATHS
