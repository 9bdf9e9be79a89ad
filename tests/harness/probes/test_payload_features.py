"""The ``features`` and ``recipes`` probe bodies, in process, on the megatron-core installed here.

Every feature check evaluated at run time must give the answer the static reading of the same
(installed) sources gives; the probe's rows must follow from those checks.
"""

from __future__ import annotations

import pytest

from harness.checks import check_satisfied, parse_check
from harness.features import FEATURES
from harness.probes import payload_recipes
from harness.probes.payload_features import check_at_runtime, probe_features


@pytest.fixture(scope="module")
def installed_scan(introspector):
    intro = introspector.introspect("installed")
    assert intro.error is None, intro.error
    return intro


def test_every_check_agrees_with_the_static_reading_of_the_installed_release(installed_scan) -> None:
    checks = {str(c): c for f in FEATURES for c in (*f.checks(), *(c for g in f.groups() for c in g))}
    disagree = {name: check_at_runtime(c) for name, c in checks.items()
                if check_at_runtime(c)[0] != check_satisfied(c, installed_scan)}
    assert not disagree


@pytest.mark.parametrize(("text", "holds", "why"), [
    ("field:num_query_groups", True, ""),
    ("field:MLATransformerConfig.num_layers", True, ""),  # inherited fields count
    ("field:MLATransformerConfig.q_lora_rank", True, ""),
    ("field:zz_not_a_field", False, "TransformerConfig has no field 'zz_not_a_field'"),
    ("field:NoSuchConfig.num_layers", False, "no config class NoSuchConfig"),
    ("class:MLATransformerConfig", True, ""),
    ("class:ModelParallelConfig", False, "transformer_config has no config class"),  # imported there, a base
    ("gpt_param:rope_scaling", True, ""),
    ("gpt_param:zz_param", False, "GPTModel.__init__ has no parameter 'zz_param'"),
    ("layer_spec:get_gpt_layer_local_spec", True, ""),
    ("layer_spec:zz_spec", False, "gpt_layer_specs has no function zz_spec"),
    ("module:megatron.core.transformer.moe", True, ""),
    ("module:megatron.core.zz_module", False, "ModuleNotFoundError: No module named 'megatron.core.zz_module'"),
])
def test_checks_answer_with_the_reason(text: str, holds: bool, why: str) -> None:
    ok, reason = check_at_runtime(parse_check(text))
    assert ok is holds and reason.startswith(why)


def test_feature_rows_follow_their_checks() -> None:
    outcome = probe_features()
    assert list(outcome.rows) == [f.name for f in FEATURES]
    for feature in FEATURES:
        row = outcome.rows[feature.name]
        required = all(check_at_runtime(c)[0] for c in feature.checks())
        any_group = not feature.any_of or any(all(check_at_runtime(c)[0] for c in g) for g in feature.groups())
        assert row.status == ("passed" if required and any_group else "failed"), (feature.name, row.details)
        assert row.metrics["checks"] == len(feature.requires) + sum(len(g) for g in feature.any_of)


def test_recipes_give_one_row_per_family_and_name_the_failing_recipe(monkeypatch) -> None:
    outcome = payload_recipes.probe_recipes()
    families = payload_recipes.recipe_families()
    assert sorted(outcome.rows) == sorted(set(families.values()))
    for family, row in outcome.rows.items():
        assert row.status == "passed", row.details
        assert row.metrics["recipes"] == sum(f == family for f in families.values())

    from bridge.config import recipes

    def broken(seq_length: int = 4096, **overrides):
        return recipes.llama3_8b_pretrain_config(seq_length=seq_length, zz_not_a_field=1, **overrides)

    monkeypatch.setitem(recipes.RECIPES, "llama3_8b_pretrain", broken)
    row = payload_recipes.probe_recipes().rows["llama"]
    assert row.status == "failed" and row.details.startswith("llama3_8b_pretrain: ")
    assert "zz_not_a_field" in row.details and row.metrics["recipes_ok"] == 0
