"""Tiny HF checkpoints, one set per bridge family, for the dynamic probes (nothing is downloaded).

A family's variants are its bridge's :meth:`~bridge.registry.MegatronModelBridge.representative_configs`:
the very configs the static requirements (and so the static matrix verdict) are derived from, so the
dynamic verdict covers the same features. Each variant is written as a checkpoint with HF's own model
class (``save_pretrained``), every parameter and persistent buffer perturbed after HF's initialisation
so that a mapping that drops, swaps or transposes any tensor changes the logits and the export.

``tiny_gpt`` is the project's ``trust_remote_code`` architecture: its checkpoint (configuration and
modelling code included) comes from :mod:`harness.probes.fixtures.tiny_gpt`, shipped in the package;
``kimi_k2``'s (a DeepSeek-V3 under its own name and code) from :mod:`harness.probes.fixtures.kimi_k2`.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bridge.requirements import variant_names
from harness.errors import ProbeError

__all__ = ["TinyVariant", "family_variants", "llama_checkpoint", "write_checkpoint"]

REMOTE_CODE_FAMILIES = frozenset({"tiny_gpt", "kimi_k2"})


@dataclass(frozen=True)
class TinyVariant:
    """One tiny checkpoint of a family: ``name`` says how it differs from the family's first variant."""

    family: str
    name: str
    config: Any  # a transformers PretrainedConfig

    @property
    def trust_remote_code(self) -> bool:
        return self.family in REMOTE_CODE_FAMILIES


@functools.lru_cache(maxsize=1)
def _bridges_by_family() -> dict[str, type]:
    from bridge.registry import registered_bridges

    return {cls.family: cls for cls in registered_bridges() if cls.family}


def family_variants(family: str) -> tuple[TinyVariant, ...]:
    """The tiny configurations a family's probe converts (its bridge's representative configs)."""
    bridges = _bridges_by_family()
    if family not in bridges:
        raise ProbeError(f"expected a registered bridge family, found {family!r}; known: {sorted(bridges)}")
    configs = list(bridges[family].representative_configs())
    if not configs:
        raise ProbeError(f"family {family!r} declares no representative_configs(); add tiny ones to its bridge")
    return tuple(TinyVariant(family, name, cfg) for name, cfg in zip(variant_names(configs), configs))


def _perturb(model: torch.nn.Module, *, seed: int, noise: float, buffer_noise: float) -> None:
    """Add N(0, 1) * ``noise`` to every parameter, and * ``buffer_noise`` to every persistent float buffer
    (e.g. DeepSeek-V3's routing ``e_score_correction_bias``, zeros after HF's initialisation)."""
    gen = torch.Generator().manual_seed(seed + 1)
    persistent = set(model.state_dict())
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(torch.randn(param.shape, generator=gen) * noise)
        for name, buf in sorted(model.named_buffers()):
            if name in persistent and buf.is_floating_point():
                buf.add_(torch.randn(buf.shape, generator=gen) * buffer_noise)


def _write_tiny_gpt(config: Any, directory: Path, *, seed: int, sentinel: Path | None = None) -> Path:
    from harness.probes.fixtures.tiny_gpt import make_custom_checkpoint, spec_from_config

    spec = spec_from_config(config.to_dict())
    return make_custom_checkpoint(directory, sentinel=sentinel or directory.parent / f"{directory.name}.sentinel",
                                  seed=seed, **asdict(spec))


def write_checkpoint(variant: TinyVariant, directory: str | Path, *, seed: int = 0, noise: float = 0.1,
                     buffer_noise: float = 0.5, sentinel: Path | None = None) -> Path:
    """Save ``variant`` as an fp32 HF checkpoint in ``directory`` (created); returns the directory.

    ``sentinel``: where TinyGPT's code records its imports (default: beside ``directory``). Its path is baked
    into the code files, so a checkpoint that is moved afterwards (the ``ckpt_compat`` writers' staging
    directories) needs one that stays put."""
    directory = Path(directory)
    if variant.family == "kimi_k2":
        from harness.probes.fixtures.kimi_k2 import make_kimi_k2_checkpoint

        return make_kimi_k2_checkpoint(directory, variant.config, seed=seed, prepare=lambda model: _perturb(
            model, seed=seed, noise=noise, buffer_noise=buffer_noise))
    if variant.trust_remote_code:
        return _write_tiny_gpt(variant.config, directory, seed=seed, sentinel=sentinel)
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(variant.config).to(torch.float32)
    _perturb(model, seed=seed, noise=noise, buffer_noise=buffer_noise)
    model.save_pretrained(directory)
    return directory


def llama_checkpoint(directory: str | Path, *, seed: int = 0, noise: float = 0.1, **config: Any) -> Path:
    """A perturbed fp32 HF Llama checkpoint from ``LlamaConfig(**config)`` (for properties and layouts)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**config)).to(torch.float32)
    _perturb(model, seed=seed, noise=noise, buffer_noise=noise)
    model.save_pretrained(Path(directory))
    return Path(directory)
