"""Megatron-Bridge's AutoBridge surface: the same names, parameters in the same order, the same kinds of results.

``MEGATRON_BRIDGE_SIGNATURES`` is the public API reference of Megatron-Bridge's ``AutoBridge``, written
down as data (method -> its leading parameters, in order). Ours may add keyword-only parameters after
them (``on_host=``, ``overwrite=``), never rename or reorder them.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from bridge import AutoBridge, ConfigError, UnsupportedFeatureError
from tests.conformance.conftest import source_tensors
from tests.conformance.families import FAMILIES

LLAMA = next(f for f in FAMILIES if f.name == "llama")
DEEPSEEK_V3 = next(f for f in FAMILIES if f.name == "deepseek_v3")

MEGATRON_BRIDGE_SIGNATURES: dict[str, tuple[str, ...]] = {
    "from_hf_pretrained": ("path",),
    "from_hf_config": ("config",),
    "from_auto_config": ("megatron_path", "hf_model_id", "trust_remote_code"),
    "can_handle": ("path", "trust_remote_code"),
    "list_supported_models": (),
    "supports": ("config",),
    "to_megatron_provider": ("self", "load_weights", "hf_path"),
    "to_megatron_model": ("self", "load_weights", "hf_path"),
    "load_hf_weights": ("self", "model", "hf_path"),
    "export_hf_weights": ("self", "model", "cpu", "show_progress", "conversion_tasks"),
    "save_hf_pretrained": ("self", "model", "path"),
    "save_hf_weights": ("self", "model", "path", "show_progress"),
    "get_conversion_tasks": ("self", "megatron_model", "hf_path"),
    "get_hf_model_id_from_checkpoint": ("path",),
    "import_ckpt": ("hf_model_id", "megatron_path"),
    "export_ckpt": ("self", "megatron_path", "hf_path"),
    "save_megatron_model": ("self", "model", "path"),
    "load_megatron_model": ("self", "path"),
}


@pytest.mark.parametrize("name", sorted(MEGATRON_BRIDGE_SIGNATURES))
def test_same_names_and_leading_parameters(name: str) -> None:
    params = [p.name for p in inspect.signature(getattr(AutoBridge, name)).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]
    expected = tuple(p for p in MEGATRON_BRIDGE_SIGNATURES[name] if p != "self")  # a classmethod may stand in
    assert tuple(params[:len(expected)]) == expected, name


def test_class_and_static_methods_are_as_in_megatron_bridge() -> None:
    for name in ("from_hf_pretrained", "from_hf_config", "from_auto_config", "can_handle", "list_supported_models",
                 "supports", "import_ckpt"):
        assert isinstance(inspect.getattr_static(AutoBridge, name), classmethod), name
    assert isinstance(inspect.getattr_static(AutoBridge, "get_hf_model_id_from_checkpoint"), staticmethod)
    for name in ("transformer_config", "mla_transformer_config"):
        assert isinstance(inspect.getattr_static(AutoBridge, name), property), name


def test_supports_and_can_handle(guide_run) -> None:
    run = guide_run(LLAMA, False)
    assert AutoBridge.supports(run.bridge.hf_config) and AutoBridge.can_handle(run.case.path)
    assert AutoBridge.supports({"architectures": ["LlamaForCausalLM"]})
    assert not AutoBridge.supports({"architectures": ["BertForMaskedLM"]}) and not AutoBridge.supports({})
    assert "LlamaForCausalLM" in AutoBridge.list_supported_models()


def test_to_megatron_model_in_one_call_with_provider_overrides(guide_run) -> None:
    run = guide_run(LLAMA, False)
    model = run.bridge.to_megatron_model(load_weights=True, wrap_with_ddp=False, tensor_model_parallel_size=1,
                                         hidden_dropout=0.0)
    assert isinstance(model, list) and len(model) == 1
    for (name, ours), (_, guide) in zip(model[0].named_parameters(), run.model[0].named_parameters(), strict=True):
        assert torch.equal(ours, guide), name
    with pytest.raises(ConfigError, match="no_such_field"):
        run.bridge.to_megatron_model(no_such_field=1)


def test_config_only_bridge_builds_random_weights_then_loads_them(guide_run) -> None:
    run = guide_run(LLAMA, False)
    bridge = AutoBridge.from_hf_config(run.bridge.hf_config)
    assert bridge.transformer_config.hidden_size == run.bridge.hf_config.hidden_size
    model = bridge.to_megatron_model(load_weights=False)
    name, param = next(iter(model[0].named_parameters()))
    assert not torch.equal(param, dict(run.model[0].named_parameters())[name])
    bridge.load_hf_weights(model, hf_path=run.case.path)
    assert all(torch.equal(a, b) for a, b in zip(model[0].parameters(), run.model[0].parameters(), strict=True))
    assert len(bridge.get_conversion_tasks(model, hf_path=run.case.path)) == len(run.bridge.get_conversion_tasks(model))


def test_save_hf_weights_writes_weights_only(guide_run, tmp_path: Path) -> None:
    run = guide_run(LLAMA, True)
    run.bridge.save_hf_weights(run.model, tmp_path / "w", show_progress=False)
    assert not (tmp_path / "w" / "config.json").exists()
    before, after = source_tensors(run.case.path), source_tensors(tmp_path / "w")
    assert sorted(after) == sorted(before) and all(torch.equal(after[n], t) for n, t in before.items())
    run.bridge.save_hf_weights(run.model, tmp_path / "half", weight_dtype=torch.bfloat16)
    half = source_tensors(tmp_path / "half")
    assert all(half[n].dtype == torch.bfloat16 and torch.equal(half[n], t.to(torch.bfloat16))
               for n, t in before.items())
    with pytest.raises(UnsupportedFeatureError, match="distributed_save"):
        run.bridge.save_hf_weights(run.model, tmp_path / "d", distributed_save=True)
    assert not (tmp_path / "d").exists()


def test_cpu_and_on_host_are_one_switch(guide_run) -> None:
    run = guide_run(LLAMA, False)
    for kwargs in ({}, {"cpu": True}, {"on_host": True}, {"cpu": False}, {"cpu": True, "on_host": True}):
        names = [name for name, _ in run.bridge.export_hf_weights(run.model, **kwargs)]
        assert names == [t.param_name for t in run.bridge.export_hf_weights(run.model)], kwargs
    with pytest.raises(ConfigError, match="contradict"):
        run.bridge.export_hf_weights(run.model, cpu=True, on_host=False)


def test_mla_transformer_config_for_mla_families_only(guide_run) -> None:
    mla = guide_run(DEEPSEEK_V3, False).bridge.mla_transformer_config
    assert type(mla).__name__ == "MLATransformerConfig"
    fields = DEEPSEEK_V3.fields
    assert (mla.q_lora_rank, mla.kv_lora_rank) == (fields["q_lora_rank"], fields["kv_lora_rank"])
    with pytest.raises(ConfigError, match="does not use Multi-Latent Attention"):
        guide_run(LLAMA, False).bridge.mla_transformer_config


def test_exported_config_is_hf_loadable(guide_run, tmp_path: Path) -> None:
    from transformers import AutoConfig

    run = guide_run(LLAMA, False)
    run.bridge.save_hf_pretrained(run.model, tmp_path / "out")
    config = AutoConfig.from_pretrained(tmp_path / "out")
    assert config.vocab_size == run.case.vocab_size
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
