"""bridge.requirements per model class: what the harness is told a family needs on GPTModel and on HybridModel."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bridge import hybrid_model
from bridge.compat import MODEL_CLASS_SOURCES
from bridge.registry import all_requirements
from bridge.requirements import model_class_modules

HYBRID_ARRIVALS = ("megatron.core.models.hybrid", "megatron.core.ssm")
"""Packages that arrived with HybridModel: every module of them the hybrid build imports is a requirement."""


@pytest.fixture(scope="module")
def both() -> dict[str, dict]:
    return {mc: {r.family: r for r in all_requirements(mc)} for mc in ("gpt", "hybrid")}


def test_every_family_has_requirements_on_both_model_classes(both):
    assert set(both["gpt"]) == set(both["hybrid"]) and len(both["gpt"]) >= 13
    gpt_module, hybrid_module = MODEL_CLASS_SOURCES["gpt"][0], MODEL_CLASS_SOURCES["hybrid"][0]
    for family, hybrid in both["hybrid"].items():
        gpt = both["gpt"][family]
        assert (gpt.model_class, hybrid.model_class) == ("gpt", "hybrid")
        assert gpt_module in gpt.modules and hybrid_module not in gpt.modules and not gpt.hybrid_model_params
        assert model_class_modules("hybrid") <= hybrid.modules and gpt_module not in hybrid.modules, family
        # the same provider config on both classes; HybridModel's arguments instead of GPTModel's
        assert hybrid.config_fields == gpt.config_fields and hybrid.config_class == gpt.config_class
        assert [v.name for v in hybrid.variants] == [v.name for v in gpt.variants]
        assert not hybrid.gpt_model_params and set(hybrid_model.HYBRID_MODEL_ARGUMENTS) <= hybrid.hybrid_model_params
        assert hybrid.hybrid_model_params - set(hybrid_model.HYBRID_MODEL_ARGUMENTS) <= gpt.gpt_model_params
        assert "rope_scaling" not in hybrid.hybrid_model_params  # the hybrid build passes it to RotaryEmbedding


def test_llama_3_1_rope_scaling_is_a_gpt_model_argument_only(both):
    llama = both["gpt"]["llama"]
    scaled = [v for v in llama.variants if "rope_scaling" in v.gpt_model_params]
    assert scaled, [v.gpt_model_params for v in llama.variants]
    hybrid = {v.name: v for v in both["hybrid"]["llama"].variants}
    assert all("rope_scaling" not in hybrid[v.name].hybrid_model_params for v in scaled)


def test_hybrid_build_modules_are_the_ones_bridge_hybrid_model_imports():
    tree = ast.parse(Path(hybrid_model.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                and n.module.startswith("megatron.")}
    arrivals = {m for m in imported if m.startswith(HYBRID_ARRIVALS)}
    assert arrivals == model_class_modules("hybrid"), "keep bridge.hybrid_model.HYBRID_BUILD_MODULES in step"


def test_unknown_model_class_is_refused():
    with pytest.raises(ValueError, match="model_class must be one of"):
        model_class_modules("mamba")
