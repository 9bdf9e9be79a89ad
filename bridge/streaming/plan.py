"""What an offline conversion will read and write, decided from headers and config alone (no tensor data).

Import (:func:`plan_import`): every HF tensor of the checkpoint is matched to the family's mapping
that consumes it (the registry's HF -> Megatron lookup, exact names before patterns, so MCore's local
layer-spec names win over Transformer Engine's fused-norm aliases); the resolved mappings are the
Megatron parameters. Missing and unexpected tensors are reported together, before anything is read.
Each parameter's full dtype and shape come from running its mapping on meta tensors.

Export (:func:`plan_export`): every parameter of a saved layout gives the HF tensors its mapping
writes, again on meta tensors, so the output files' headers are known before the first byte is read.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from bridge._logging import get_logger
from bridge.errors import MappingError, UnsupportedFeatureError, WeightMismatchError, tensors_mismatch
from bridge.mappings import MappingContext, MegatronMappingRegistry, MegatronParamMapping, StackedExpertMapping
from bridge.parallel.pp import PipelineLayout
from bridge.parallel.spec import ParallelLayout, ParamSpec
from bridge.streaming.shards import TensorSource, full_shape, tp_meta

__all__ = ["HFTensorPlan", "ParamPlan", "import_layout", "order_key", "plan_export", "plan_import"]

log = get_logger("streaming.plan")

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.")
_PREFIX_RANK = (("embedding.", 0), ("decoder.layers.", 1), ("decoder.", 2))


def order_key(name: str) -> tuple[int, tuple[int | str, ...]]:
    """Model order for global Megatron names: embedding, layers by number, final norm, output, the rest."""
    rank = next((r for prefix, r in _PREFIX_RANK if name.startswith(prefix)), 3)
    return rank, tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


@dataclass(frozen=True)
class ParamPlan:
    """One Megatron parameter to build: its resolved mapping and full (unsharded) dtype and shape."""

    name: str
    mapping: MegatronParamMapping
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return self.mapping.sharding

    @property
    def hf_names(self) -> list[str]:
        return self.mapping.hf_names()


def _ignored(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _refuse_stacked_experts(registry: MegatronMappingRegistry) -> None:
    """Offline plans map HF tensors and parameters one to one; a stacked expert tensor (GPT-OSS) feeds one
    parameter per expert, which only the conversion of a built model (:mod:`bridge.conversion`) assembles."""
    stacked = sorted(m.megatron_param for m in registry if isinstance(m, StackedExpertMapping))
    if stacked:
        raise UnsupportedFeatureError(
            f"offline (streaming) conversion does not support experts stored as one stacked HF tensor ({stacked}); "
            "convert through a built model instead: AutoBridge.to_megatron_model / save_hf_pretrained"
        )


def plan_import(source: TensorSource, registry: MegatronMappingRegistry, ctx: MappingContext, *,
                names: Iterable[str], ignored_hf_patterns: Iterable[str] = ()) -> list[ParamPlan]:
    """The Megatron parameters built from the HF tensors ``names`` of ``source``, in model order.

    Raises:
        WeightMismatchError: some mapping lacks an HF tensor, or some HF tensor has no mapping (and is
            not ignored by the family), or a tensor's shape does not fit its mapping.
    """
    available = set(names)
    ignored = tuple(ignored_hf_patterns)
    found: dict[str, MegatronParamMapping] = {}
    unexpected: list[str] = []
    _refuse_stacked_experts(registry)
    for hf in sorted(available):
        mapping = registry.hf_to_megatron_lookup(hf)
        if mapping is None:
            if not _ignored(hf, ignored):
                unexpected.append(hf)
            continue
        found.setdefault(mapping.megatron_param, mapping)
    missing = sorted({n for m in found.values() for n in m.hf_names()} - available)
    if missing or unexpected:
        raise tensors_mismatch(
            "the HF checkpoint does not match the model's mapping table", missing, unexpected,
            unexpected_why=" no mapping consumes",
            fix="Check that config.json describes these weights (layers, tie_word_embeddings, biases) and that the "
                "family's mapping table (bridge/models/<family>/bridge.py) covers them.")
    plans = []
    for name in sorted(found, key=order_key):
        dtype, shape = full_shape(found[name], ctx, source)
        plans.append(ParamPlan(name, found[name], dtype, shape))
    log.debug("planned %d Megatron parameters from %d HF tensors", len(plans), len(available))
    return plans


def import_layout(plans: list[ParamPlan], ctx: MappingContext, *, tp: int, pp: int, num_layers: int,
                  first_stage_layers: int | None = None, last_stage_layers: int | None = None,
                  share_embeddings_and_output_weights: bool = False,
                  dtype: torch.dtype | None = None) -> ParallelLayout:
    """The :class:`ParallelLayout` of the planned parameters at ``tp`` x ``pp`` (``dtype``: cast to it).

    Raises:
        WeightMismatchError: the checkpoint's decoder layers are not ``0 .. num_layers - 1``.
        ParallelLayoutError: ``pp`` (with the stage overrides) does not fit ``num_layers``.
    """
    layers = {int(m.group(1)) for m in (_LAYER.match(p.name) for p in plans) if m}
    if layers != set(range(num_layers)):
        raise WeightMismatchError(
            f"config.json says num_hidden_layers={num_layers} but the checkpoint holds decoder layers "
            f"{sorted(layers)[:8]}{' ...' if len(layers) > 8 else ''} ({len(layers)} in all); fix the config or "
            "the checkpoint so that they agree."
        )
    params = {p.name: ParamSpec(p.kind, tp_meta(p.mapping, ctx), dtype or p.dtype, p.shape) for p in plans}
    return ParallelLayout(
        tp=tp,
        pipeline=PipelineLayout(num_layers, pp, first_stage_layers, last_stage_layers),
        params=params,
        share_embeddings_and_output_weights=share_embeddings_and_output_weights,
    )


@dataclass(frozen=True)
class HFTensorPlan:
    """One HF tensor an export writes, and the Megatron parameter it comes from."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    source: str

    @property
    def nbytes(self) -> int:
        count = 1
        for d in self.shape:
            count *= d
        return count * self.dtype.itemsize


def plan_export(layout: ParallelLayout, registry: MegatronMappingRegistry,
                ctx: MappingContext) -> list[tuple[str, MegatronParamMapping, list[HFTensorPlan]]]:
    """``(megatron_name, mapping, HF tensors it writes)`` for every exported parameter, in model order.

    Parameters whose mapping does not export (a tied output layer) are left out.

    Raises:
        MappingError: a parameter of the layout has no mapping in the family's table.
        WeightMismatchError: two parameters would write the same HF tensor.
    """
    _refuse_stacked_experts(registry)
    unmapped = [n for n in layout.params if registry.megatron_to_hf_lookup(n) is None]
    if unmapped:
        raise MappingError(
            f"{len(unmapped)} parameter(s) of the saved layout have no mapping: {sorted(unmapped)[:10]}; the layout "
            "was written for another model family, or the config next to it is not the model's."
        )
    out: list[tuple[str, MegatronParamMapping, list[HFTensorPlan]]] = []
    writer_of: dict[str, str] = {}
    for name in sorted(layout.params, key=order_key):
        spec = layout.params[name]
        mapping = registry.megatron_to_hf_lookup(name)
        assert mapping is not None and spec.shape is not None and spec.dtype is not None, name
        if not mapping.export:
            continue
        try:
            hf = mapping.megatron_to_hf(torch.empty(spec.shape, dtype=spec.dtype, device="meta"), ctx)
        except (ValueError, RuntimeError) as exc:
            raise WeightMismatchError(
                f"{name} {spec.shape} cannot be split into HF tensors {mapping.hf_names()}: {exc}. The config "
                "does not describe the saved model (heads, key/value heads, head_dim)."
            ) from exc
        tensors = []
        for hf_name, t in hf.items():
            if hf_name in writer_of:
                raise WeightMismatchError(f"{name} and {writer_of[hf_name]} both export HF tensor {hf_name!r}")
            writer_of[hf_name] = name
            tensors.append(HFTensorPlan(hf_name, t.dtype, tuple(t.shape), name))
        out.append((name, mapping, tensors))
    return out
