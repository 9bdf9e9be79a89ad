"""ModelConfig: any TransformerConfig field flows Bridge config -> provider -> TransformerConfig ->
GPTModel unchanged; bad names fail when the ModelConfig is created, before anything is built."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from bridge import compat
from bridge.config import ConfigContainer, ModelConfig, UnknownFieldError
from bridge.errors import ConfigError, UnsupportedModelError
from tests.helpers.tiny import TINY_LLAMA

TINY = {**TINY_LLAMA, "architectures": ["LlamaForCausalLM"]}


def _init(tensor: torch.Tensor) -> None:
    torch.nn.init.normal_(tensor, std=0.01)


# Fields the HF config does not set, with non-default values (several fields where MCore requires
# them together). ``init_method`` is a function: it must arrive as the very same object.
FIELD_SETS: list[dict[str, Any]] = [
    {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": 1},
    {"calculate_per_token_loss": True, "test_mode": True},
    {"apply_residual_connection_post_layernorm": True, "fp32_residual_connection": True},
    {"init_method": _init, "hidden_dropout": 0.25, "attention_dropout": 0.125},
    {"softmax_type": "off-by-one"},
]


@pytest.mark.parametrize("overrides", FIELD_SETS, ids=lambda d: "+".join(d))
def test_override_reaches_built_model_config_unchanged(overrides: dict, fresh_parallel_state: None) -> None:
    model_cfg = ModelConfig(family="llama", hf_config=TINY, overrides=overrides)
    provider = ConfigContainer(model=model_cfg).to_provider()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    config = model[0].config
    for name, value in overrides.items():
        assert getattr(config, name) is value or getattr(config, name) == value, name
        assert getattr(model_cfg, name) is value  # attribute read gives what will be built
    assert dataclasses.fields(config)  # a real MCore TransformerConfig


def test_attribute_reads_follow_hf_config_then_overrides_then_mcore_default() -> None:
    from megatron.core.transformer.transformer_config import TransformerConfig

    m = ModelConfig(hf_config=TINY)
    assert m.family == "llama"  # from architectures
    assert (m.hidden_size, m.num_query_groups, m.num_layers) == (64, 2, 2)
    assert m.activation == "silu" and m.head_dim == 16  # a provider field and property
    with pytest.raises(AttributeError):
        m.finalize  # noqa: B018 - provider methods are not config values
    default = next(f.default for f in dataclasses.fields(TransformerConfig) if f.name == "recompute_granularity")
    assert m.recompute_granularity == default
    m2 = m.with_overrides(recompute_granularity="selective", num_layers=4)
    assert (m2.recompute_granularity, m2.num_layers, m.num_layers) == ("selective", 4, 2)
    assert m2.without_overrides("num_layers").num_layers == 2
    with pytest.raises(AttributeError, match="no field 'hiden_size'"):
        m.hiden_size  # noqa: B018
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.num_layers = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.overrides["num_layers"] = 3  # type: ignore[index]


def test_typo_names_the_closest_fields() -> None:
    with pytest.raises(UnknownFieldError) as err:
        ModelConfig(family="llama", hf_config=TINY, overrides={"recompute_granularty": "full"})
    msg = str(err.value)
    assert "'recompute_granularty'" in msg and "'recompute_granularity'" in msg
    assert str(compat.installed_version()) in msg


def test_parallelism_fields_are_refused_in_the_model_section() -> None:
    with pytest.raises(ConfigError, match="parallelism section"):
        ModelConfig(hf_config=TINY, overrides={"tensor_model_parallel_size": 2})


def test_family_and_architectures_must_agree() -> None:
    with pytest.raises(ConfigError, match="does not match"):
        ModelConfig(family="qwen2", hf_config=TINY)
    with pytest.raises(UnsupportedModelError, match="known families"):
        ModelConfig(family="lama", hf_config={k: v for k, v in TINY.items() if k != "architectures"})
    with pytest.raises(ConfigError, match="family= or hf_config"):
        ModelConfig(hf_config={k: v for k, v in TINY.items() if k != "architectures"})


def test_hf_config_object_and_dict_give_the_same_provider() -> None:
    from transformers import LlamaConfig

    by_dict = ModelConfig(family="llama", hf_config={k: v for k, v in TINY.items() if k != "architectures"})
    by_object = ModelConfig(hf_config=LlamaConfig(**TINY))
    assert by_dict.base_provider() == by_object.base_provider()
    assert by_object.to_dict()["hf_config"]["hidden_size"] == 64


def test_a_custom_code_family_builds_from_a_dict_with_its_legacy_rope_scaling() -> None:
    """Kimi-K2 is registered by name and transformers has no ``kimi_k2`` config class: a dict config
    becomes a plain PretrainedConfig (no checkpoint code runs) whose YaRN ``rope_scaling`` reaches MLA."""
    from transformers import PretrainedConfig

    from bridge.models.kimi_k2.bridge import KimiK2Bridge

    base = KimiK2Bridge.representative_configs()[1].to_dict()  # tied, plain RoPE
    yarn = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 1.0,
            "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
    data = {k: v for k, v in base.items() if k != "rope_parameters"} | {"rope_theta": 50000.0, "rope_scaling": yarn}
    model = ModelConfig(hf_config=data)
    assert model.family == "kimi_k2" and type(model.hf_config_object()) is PretrainedConfig
    overrides = model.base_provider().config_overrides
    rope = (overrides["rope_type"], overrides["rotary_scaling_factor"], overrides["rotary_base"])
    assert rope == ("yarn", 4.0, 50000.0)
