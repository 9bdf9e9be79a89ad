"""harness.verdicts on real releases with Requirements built directly (no bridge family needed)."""

from __future__ import annotations

from bridge.requirements import Requirements
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
