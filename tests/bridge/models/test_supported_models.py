"""Every family is listed by ``AutoBridge.list_supported_models`` and ``can_handle`` agrees with the list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge import AutoBridge
from bridge.registry import registered_bridges

FAMILIES = {
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3",
    "LlamaForCausalLM": "llama",
    "GraniteForCausalLM": "granite",
    "MistralForCausalLM": "mistral",
    "NemotronForCausalLM": "nemotron",
    "Phi3ForCausalLM": "phi3",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "SmolLM3ForCausalLM": "smollm3",
    "TinyGPTForCausalLM": "tiny_gpt",
}


def _checkpoint_dir(root: Path, architectures: list[str]) -> Path:
    d = root / "_".join(architectures or ["none"])
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": architectures}))
    return d


def test_every_family_is_listed() -> None:
    listed = AutoBridge.list_supported_models()
    assert listed == sorted(listed)
    by_arch = {b.architecture: b.family for b in registered_bridges()}
    for arch, family in FAMILIES.items():
        assert arch in listed and by_arch[arch] == family


def test_registration_kind() -> None:
    kinds = {b.architecture: b.registration for b in registered_bridges()}
    assert kinds["TinyGPTForCausalLM"] == "string"  # its classes live in checkpoints, never imported
    assert {kinds[a] for a in FAMILIES if a != "TinyGPTForCausalLM"} == {"type"}


def test_can_handle_agrees_with_the_list(tmp_path: Path) -> None:
    listed = AutoBridge.list_supported_models()
    for arch in listed:
        assert AutoBridge.can_handle(_checkpoint_dir(tmp_path, [arch])), arch
    near_misses = ["Qwen2Model", "MistralForSequenceClassification", "Gemma3ForConditionalGeneration", "TinyGPTModel"]
    for arch in near_misses:
        assert arch not in listed
        assert not AutoBridge.can_handle(_checkpoint_dir(tmp_path, [arch])), arch
    assert not AutoBridge.can_handle(_checkpoint_dir(tmp_path, []))


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_representative_configs_build_providers(arch: str) -> None:
    (bridge_cls,) = [b for b in registered_bridges() if b.architecture == arch]
    configs = bridge_cls.representative_configs()
    assert len(configs) >= 2
    for cfg in configs:
        bridge_cls().provider_bridge(cfg).validate()
    assert bridge_cls.requirements(), arch
