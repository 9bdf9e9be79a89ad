"""harness.verdicts on real releases with Requirements built directly (no bridge family needed)."""

from __future__ import annotations

import dataclasses

from bridge.requirements import Requirements, Variant
from harness.introspect import Introspection
from harness.renames import RenameTable
from harness.requirements import row_for_feature, row_for_requirements
from harness.features import feature_by_name
from harness.revisions import parse_revision
from harness.verdicts import evaluate


def req(**kw) -> Requirements:
    base = dict(family="demo", config_fields=frozenset({"num_layers", "hidden_size"}),
                gpt_model_params=frozenset({"vocab_size"}),
                layer_spec_functions=frozenset({"get_gpt_layer_local_spec"}),
                modules=frozenset({"megatron.core.models.gpt.gpt_model"}))
    base.update(kw)
    return Requirements(**base)


def test_supported(pypi_scans):
    v = evaluate(row_for_requirements(req()), pypi_scans["0.10.0"])
    assert v.status == "supported" and v.missing == ()


def test_missing_lists_exact_attributes(pypi_scans):
    row = row_for_requirements(req(
        config_fields=frozenset({"num_layers", "attention_backend"}),
        gpt_model_params=frozenset({"vocab_size", "mtp_block_spec"}),
        layer_spec_functions=frozenset({"get_gpt_mtp_block_spec"}),
        modules=frozenset({"megatron.core.transformer.multi_token_prediction"}),
    ))
    v = evaluate(row, pypi_scans["0.10.0"])
    assert v.status == "missing"
    assert set(v.missing) == {"field:attention_backend", "gpt_param:mtp_block_spec",
                              "layer_spec:get_gpt_mtp_block_spec",
                              "module:megatron.core.transformer.multi_token_prediction"}
    assert evaluate(row, pypi_scans["0.16.1"]).status == "supported"


def test_renamed_field_in_either_direction(pypi_scans):
    new_name = row_for_requirements(req(config_fields=frozenset({"num_layers_in_first_pipeline_stage"})))
    v = evaluate(new_name, pypi_scans["0.10.0"], RenameTable())
    assert v.status == "renamed"
    assert v.renamed == {"num_layers_in_first_pipeline_stage": "first_pipeline_num_layers"}
    old_name = row_for_requirements(req(config_fields=frozenset({"first_pipeline_num_layers"})))
    assert evaluate(old_name, pypi_scans["0.11.0"]).status == "renamed"
    assert evaluate(old_name, pypi_scans["0.11.0"], RenameTable([])).status == "missing"


def test_family_declared_rename_is_used(pypi_scans):
    row = row_for_requirements(req(config_fields=frozenset({"moe_extended_tp_new"}),
                                   renames=(("moe_extended_tp_new", "moe_extended_tp"),)))
    assert evaluate(row, pypi_scans["0.16.1"], RenameTable([])).status == "renamed"
    assert evaluate(row, pypi_scans["0.17.0"], RenameTable([])).status == "missing"


def test_missing_config_class_implies_its_fields(pypi_scans):
    row = row_for_requirements(req(config_class="MoEConfig", config_fields=frozenset({"num_moe_experts"})))
    v = evaluate(row, pypi_scans["0.16.1"])
    assert v.missing == ("class:MoEConfig",)


def test_error_revision():
    broken = Introspection(revision=parse_revision("pypi:0.8.0"), error="cannot parse x.py")
    v = evaluate(row_for_feature(feature_by_name("moe")), broken)
    assert (v.status, v.details) == ("error", "cannot parse x.py")


def llama_like(**kw) -> Requirements:
    """A family whose third variant needs rope scaling (GPTModel's rope_scaling_factor: 0.11 onward)."""
    base = req(**kw)
    scaled = Variant("v2(rope_parameters)", base.config_fields, base.gpt_model_params | {"rope_scaling_factor"})
    return dataclasses.replace(base, gpt_model_params=scaled.gpt_model_params, variants=(
        Variant("v0(base)", base.config_fields, base.gpt_model_params),
        Variant("v1(tie_word_embeddings)", base.config_fields, base.gpt_model_params),
        scaled,
    ))


def test_partial_when_only_some_variants_run(pypi_scans):
    row = row_for_requirements(llama_like())
    v = evaluate(row, pypi_scans["0.10.0"])
    assert v.status == "partial"
    assert v.missing == ("gpt_param:rope_scaling_factor",)
    assert {n: s["status"] for n, s in v.variants.items()} == {
        "v0(base)": "supported", "v1(tie_word_embeddings)": "supported", "v2(rope_parameters)": "missing"}
    assert v.variants["v2(rope_parameters)"]["missing"] == ["gpt_param:rope_scaling_factor"]
    assert "2/3 variants run" in v.details and "v2(rope_parameters) needs gpt_param:rope_scaling_factor" in v.details
    assert v.to_json()["variants"] == v.variants
    assert evaluate(row, pypi_scans["0.11.0"]).status == "supported"  # every variant runs: no variants in the cell
    assert "variants" not in evaluate(row, pypi_scans["0.11.0"]).to_json()


def test_missing_when_no_variant_runs(pypi_scans):
    fam = llama_like(config_fields=frozenset({"num_layers", "attention_backend"}))  # attention_backend: 0.11 on
    row = row_for_requirements(fam)
    v = evaluate(row, pypi_scans["0.10.0"])
    assert v.status == "missing" and "field:attention_backend" in v.missing and not v.variants


def test_a_family_of_one_variant_is_never_partial(pypi_scans):
    base = req(gpt_model_params=frozenset({"vocab_size", "rope_scaling_factor"}))
    row = row_for_requirements(dataclasses.replace(base, variants=(
        Variant("v0(base)", base.config_fields, base.gpt_model_params),)))
    assert row.variants == () and evaluate(row, pypi_scans["0.10.0"]).status == "missing"


def test_the_llama_family_is_partial_on_0_8_to_0_10_from_its_representative_configs(pypi_scans):
    """Derived from the bridge's own configs: base and tied run, the Llama-3.1 rope-scaling variant does not."""
    from bridge.models.llama.bridge import LlamaBridge

    (fam,) = LlamaBridge.requirements()
    assert [v.name for v in fam.variants] == ["v0(base)", "v1(tie_word_embeddings)", "v2(rope_parameters)"]
    row = row_for_requirements(fam)
    v = evaluate(row, pypi_scans["0.10.0"])
    assert v.status == "partial"
    assert [n for n, s in v.variants.items() if s["status"] == "supported"] == ["v0(base)", "v1(tie_word_embeddings)"]
    assert v.variants["v2(rope_parameters)"]["missing"] == ["gpt_param:rope_scaling_factor"]
    assert evaluate(row, pypi_scans["0.11.0"]).status == "supported"
