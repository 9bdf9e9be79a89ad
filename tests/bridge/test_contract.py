"""The contract every registered family meets, checked on each of its ``representative_configs()``.

For each config a tiny HF checkpoint is written and the MCore model is built through ``AutoBridge``
(TP = PP = 1). Then: every MCore parameter and persistent buffer has a mapping; every HF tensor of the checkpoint is
consumed (nothing missing, nothing left over); each mapping turns the real HF tensors into the
parameter's full shape; and exporting gives those HF tensors back, bit for bit, each written once.
New families are picked up automatically from :func:`bridge.registry.registered_bridges`.

A second contract pins the exact MCore state-dict names of a tiny Llama, so that a silent rename in
MCore or in the bridge fails here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from bridge import conversion
from bridge.auto_bridge import AutoBridge
from bridge.checkpoint.reader import HFCheckpointReader
from bridge.mappings import ExpertStacker
from bridge.parallel import kinds
from bridge.registry import MegatronModelBridge, registered_bridges
from harness.probes.fixtures.kimi_k2 import ARCHITECTURE as KIMI_K2_ARCH
from harness.probes.fixtures.kimi_k2 import make_kimi_k2_checkpoint
from harness.probes.fixtures.tiny_gpt import ARCHITECTURE as TINY_GPT_ARCH
from harness.probes.fixtures.tiny_gpt import make_custom_checkpoint, spec_from_config

BRIDGES = registered_bridges()
CASES = [
    pytest.param(cls, i, id=f"{cls.family or cls.architecture}-{i}")
    for cls in BRIDGES
    for i in range(len(cls.representative_configs()))
]


def _config_dict(config: Any) -> dict[str, Any]:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def write_checkpoint(cls: type[MegatronModelBridge], config: Any, path: Path, *, seed: int = 0) -> bool:
    """Save a tiny HF checkpoint for ``config``; returns whether it needs ``trust_remote_code``."""
    if cls.architecture == TINY_GPT_ARCH:
        spec = spec_from_config(_config_dict(config))
        make_custom_checkpoint(path, sentinel=path.parent / "sentinel.txt", seed=seed, **asdict(spec))
        return True
    if cls.architecture == KIMI_K2_ARCH:
        make_kimi_k2_checkpoint(path, config, seed=seed)
        return True
    torch.manual_seed(seed)
    if cls.registration == "type" and cls.hf_class is not None:
        model = cls.hf_class(config)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    return False


def build(path: Path, *, trust: bool, model_class: str = "gpt"):
    auto = AutoBridge.from_hf_pretrained(path, trust_remote_code=True if trust else None)
    provider = auto.to_megatron_provider(load_weights=False)
    provider.tensor_model_parallel_size = 1
    provider.pipeline_model_parallel_size = 1
    provider.model_class = model_class
    provider.finalize()
    return auto, provider, provider.provide_distributed_model(wrap_with_ddp=False)


def global_parameters(chunks: list[torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    return {conversion.global_name(chunk, local): p for chunk in chunks for local, p in chunk.named_parameters()}


def global_persistent_buffers(chunks: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Buffers saved in the state dict (e.g. the MoE router's ``expert_bias``): checkpoint state too."""
    out: dict[str, torch.Tensor] = {}
    for chunk in chunks:
        saved = set(chunk.state_dict(keep_vars=True))
        out.update({conversion.global_name(chunk, local): b for local, b in chunk.named_buffers() if local in saved})
    return out


def test_every_family_has_representative_configs():
    empty = sorted(cls.__name__ for cls in BRIDGES if not cls.representative_configs())
    assert not empty, f"families without representative_configs() cannot be contract-checked: {empty}"


def _installed_model_classes() -> list[Any]:
    """GPTModel, and HybridModel where the installed megatron-core has it (0.18+; tests/bridge/
    test_hybrid_releases.py runs this module on 0.19.2 too)."""
    from bridge import compat

    return [pytest.param(c, id=c, marks=() if compat.has_feature(f"{c}_model") else
                         pytest.mark.skip(reason=f"megatron-core {compat.installed_version()} has no {c} model class"))
            for c in ("gpt", "hybrid")]


@pytest.mark.parametrize("model_class", _installed_model_classes())
@pytest.mark.parametrize("bridge_cls, index", CASES)
def test_family_contract(bridge_cls, index, model_class, tmp_path, fresh_parallel_state):
    config = bridge_cls.representative_configs()[index]
    ckpt = tmp_path / "hf"
    trust = write_checkpoint(bridge_cls, config, ckpt)
    auto, provider, chunks = build(ckpt, trust=trust, model_class=model_class)
    assert type(auto.bridge) is bridge_cls
    assert type(chunks[0]).__name__ == {"gpt": "GPTModel", "hybrid": "HybridModel"}[model_class]
    # The table of the model built: the family's GPT table, or derived from it for HybridModel.
    registry = auto.bridge.model_registry(provider)
    ctx = auto.bridge.mapping_context(provider)
    # Persistent buffers (MoE router.expert_bias) are checkpoint state: conversion carries them too.
    params = {**global_parameters(chunks), **global_persistent_buffers(chunks)}

    # 1. every MCore parameter and persistent buffer is mapped
    mappings = {name: registry.megatron_to_hf_lookup(name) for name in params}
    unmapped = sorted(n for n, m in mappings.items() if m is None)
    assert not unmapped, f"{len(unmapped)} MCore parameter(s)/persistent buffer(s) without a mapping: {unmapped}"

    # 2. every HF tensor is consumed, and every tensor a mapping needs exists
    reader = HFCheckpointReader(ckpt)
    available = set(reader.keys())
    needed = {hf for m in mappings.values() for hf in m.hf_names()}
    missing = sorted(needed - available)
    leftover = sorted(n for n in available - needed
                      if not any(fnmatch.fnmatchcase(n, p) for p in auto.bridge.ignored_hf_patterns))
    assert not missing and not leftover, (
        f"missing from the checkpoint ({len(missing)}): {missing}; left over ({len(leftover)}): {leftover}")

    # 3. shapes agree, and 4. export gives the checkpoint's tensors back, each exactly once
    wrong: list[str] = []
    exported: dict[str, list[str]] = {}
    not_bit_exact: list[str] = []
    stacker = ExpertStacker()
    for name, mapping in sorted(mappings.items()):
        hf = {n: reader.get(n) for n in mapping.hf_names()}
        full = mapping.hf_to_megatron(hf, ctx)
        shard = kinds.split(mapping.sharding, full, tp=1, rank=0, name=name, **conversion.tp_meta(mapping, ctx))
        if tuple(shard.shape) != tuple(params[name].shape):
            wrong.append(f"{name}: parameter {tuple(params[name].shape)}, from {sorted(hf)} {tuple(shard.shape)}")
        if not mapping.export:
            continue
        for piece_name, piece in mapping.megatron_to_hf(full, ctx).items():
            for hf_name, tensor in stacker.add(mapping, piece_name, piece):  # stacked experts: once all are in
                exported.setdefault(hf_name, []).append(name)
                if hf_name not in hf or tensor.dtype != hf[hf_name].dtype or not torch.equal(tensor, hf[hf_name]):
                    not_bit_exact.append(hf_name)
    stacker.finish()
    assert not wrong, f"{len(wrong)} shape mismatch(es): {wrong}"
    assert not not_bit_exact, f"export does not reproduce these HF tensors: {sorted(not_bit_exact)}"
    twice = {n: sorted(src) for n, src in sorted(exported.items()) if len(src) > 1}
    assert not twice, f"HF tensors exported by several parameters: {twice}"
    unexported = sorted(n for n in available - set(exported)
                        if not any(fnmatch.fnmatchcase(n, p) for p in auto.bridge.ignored_hf_patterns))
    assert not unexported, f"HF tensors that export would not write: {unexported}"


# -- the exact MCore parameter names of a tiny Llama ------------------------------------------------

def _llama_layer(i: int) -> dict[str, tuple[int, ...]]:
    p = f"decoder.layers.{i}."
    return {
        p + "input_layernorm.weight": (64,),
        p + "self_attention.linear_qkv.weight": (128, 64),   # (4 q + 2 k + 2 v heads) x 16
        p + "self_attention.linear_proj.weight": (64, 64),
        p + "pre_mlp_layernorm.weight": (64,),
        p + "mlp.linear_fc1.weight": (256, 64),              # gate + up, 128 each
        p + "mlp.linear_fc2.weight": (64, 128),
    }


LLAMA_TIED = {
    "embedding.word_embeddings.weight": (96, 64),            # HF's vocabulary: no padding by default
    **_llama_layer(0),
    **_llama_layer(1),
    "decoder.final_layernorm.weight": (64,),
}
LLAMA_UNTIED = {**LLAMA_TIED, "output_layer.weight": (96, 64)}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_llama_state_dict_names(tied, request, fresh_parallel_state):
    ckpt = request.getfixturevalue("tiny_llama_tied_checkpoint" if tied else "tiny_llama_checkpoint")
    _, _, chunks = build(ckpt, trust=False)
    got = {name: tuple(p.shape) for name, p in global_parameters(chunks).items()}
    want = LLAMA_TIED if tied else LLAMA_UNTIED
    assert sorted(set(want) - set(got)) == [] and sorted(set(got) - set(want)) == [], (
        f"missing {sorted(set(want) - set(got))}; unexpected {sorted(set(got) - set(want))}")
    assert got == want
