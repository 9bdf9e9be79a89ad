"""Whole-model sharding: a full state dict <-> the local state dict of every (TP rank, PP rank).

The full state uses global layer numbers and TP-unsharded tensors, without tied copies (a model
with ``share_embeddings_and_output_weights`` has no ``output_layer.weight``). Each rank's dict
uses the names the rank's model chunk has (local layer numbers) and includes the copies its
stage holds (see :meth:`~bridge.parallel.pp.PipelineLayout.copies`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from bridge._logging import get_logger
from bridge.errors import ParallelLayoutError
from bridge.parallel._common import bitwise_equal
from bridge.parallel.kinds import merge, split
from bridge.parallel.pp import OUTPUT_WEIGHT, PipelineLayout
from bridge.parallel.spec import ParallelLayout, ParamSpec, as_param_spec

__all__ = [
    "Rank",
    "expected_local_names",
    "layout_for",
    "merge_param",
    "merge_shards",
    "merge_state",
    "placements",
    "split_full_state",
    "split_param",
    "split_state",
]

log = get_logger("parallel.state")

#: ``(tp_rank, pp_rank)``.
Rank = tuple[int, int]
KindsArg = Mapping[str, ParamSpec | tuple[str, Mapping[str, Any]] | str]
_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.")


def placements(layout: ParallelLayout) -> dict[str, list[tuple[int, str]]]:
    """Global name -> ``[(stage, local_name), ...]``: the owner first, then any tied copies.

    A HybridModel layout is placed as its GPT twin (the pipeline counts GPT blocks), names renamed back.
    """
    if layout.model_class != "gpt":
        from bridge.hybrid import rename_for

        back = rename_for("gpt", layout.model_class)
        gpt = placements(layout.relabeled("gpt"))
        return {back(name): [(stage, back(local)) for stage, local in places] for name, places in gpt.items()}
    out = {name: [layout.pipeline.to_local(name)] for name in layout.params}
    copies = layout.pipeline.copies(
        layout.params,
        share_embeddings_and_output_weights=layout.share_embeddings_and_output_weights,
        mtp=layout.mtp,
    )
    for copy in copies:
        out[copy.source].append((copy.stage, copy.local_name))
    return out


def expected_local_names(layout: ParallelLayout) -> dict[int, list[str]]:
    """Stage -> the local names every TP rank of that stage holds, in parameter order."""
    out: dict[int, list[str]] = {stage: [] for stage in range(layout.pp)}
    for places in placements(layout).values():
        for stage, local in places:
            out[stage].append(local)
    return out


def split_param(name: str, tensor: torch.Tensor, spec: ParamSpec, *, tp: int) -> list[torch.Tensor]:
    """The ``tp`` shards of one full parameter."""
    return split(spec.kind, tensor, tp=tp, name=name, **spec.meta)  # type: ignore[return-value]


def merge_param(name: str, shards: list[torch.Tensor], spec: ParamSpec) -> torch.Tensor:
    """One full parameter from its rank-ordered shards, checked against ``spec``'s dtype and shape."""
    full = merge(spec.kind, shards, name=name, **spec.meta)
    if spec.dtype is not None and full.dtype != spec.dtype:
        raise ParallelLayoutError(
            f"{name!r} merged to dtype {full.dtype} but the layout records {spec.dtype}."
        )
    if spec.shape is not None and tuple(full.shape) != spec.shape:
        raise ParallelLayoutError(
            f"{name!r} merged to shape {tuple(full.shape)} but the layout records {spec.shape}; the "
            "shards do not belong to this layout."
        )
    return full


def layout_for(
    full: Mapping[str, torch.Tensor],
    kinds: KindsArg,
    *,
    tp: int,
    pp: int = 1,
    first_stage_layers: int | None = None,
    last_stage_layers: int | None = None,
    num_layers: int | None = None,
    share_embeddings_and_output_weights: bool = False,
    mtp: bool = False,
) -> ParallelLayout:
    """The :class:`ParallelLayout` of ``full`` at ``tp`` x ``pp`` (specs completed from the tensors).

    ``num_layers`` defaults to the number of ``decoder.layers.{i}`` in ``full`` (which must be
    numbered ``0..n-1``).
    """
    missing = [name for name in full if name not in kinds]
    if missing:
        raise ParallelLayoutError(
            f"No sharding kind for {len(missing)} parameter(s), e.g. {missing[:5]}; add them to "
            "the mapping (kinds) before splitting."
        )
    if share_embeddings_and_output_weights and OUTPUT_WEIGHT in full:
        raise ParallelLayoutError(
            f"share_embeddings_and_output_weights=True but the full state has its own "
            f"{OUTPUT_WEIGHT!r}; a tied model keeps only the word embedding. Drop it or untie."
        )
    if num_layers is None:
        num_layers = _count_layers(full)
    params = {
        name: as_param_spec(kinds[name]).completed(tensor, name=name)
        for name, tensor in full.items()
    }
    return ParallelLayout(
        tp=tp,
        pipeline=PipelineLayout(num_layers, pp, first_stage_layers, last_stage_layers),
        params=params,
        share_embeddings_and_output_weights=share_embeddings_and_output_weights,
        mtp=mtp,
    )


def _count_layers(names: Iterable[str]) -> int:
    found = {int(m.group(1)) for m in map(_LAYER.match, names) if m}
    if found != set(range(len(found))):
        raise ParallelLayoutError(
            f"Decoder layers must be numbered 0..n-1 without gaps; found {sorted(found)}. Pass "
            "num_layers explicitly or complete the state."
        )
    return len(found)


def split_state(
    full: Mapping[str, torch.Tensor], layout: ParallelLayout
) -> dict[Rank, dict[str, torch.Tensor]]:
    """Every rank's local state dict for ``layout`` (whose ``params`` must cover ``full``)."""
    extra = sorted(set(full) ^ set(layout.params))
    if extra:
        raise ParallelLayoutError(
            f"The full state and the layout disagree on {len(extra)} parameter(s), e.g. {extra[:5]}."
        )
    out: dict[Rank, dict[str, torch.Tensor]] = {rank: {} for rank in layout.ranks()}
    for name, places in placements(layout).items():
        shards = split_param(name, full[name], layout.params[name], tp=layout.tp)
        for stage, local in places:
            for tp_rank, shard in enumerate(shards):
                out[(tp_rank, stage)][local] = shard
    return out


def split_full_state(
    full: Mapping[str, torch.Tensor],
    kinds: KindsArg,
    *,
    tp: int,
    pp: int = 1,
    first_stage_layers: int | None = None,
    last_stage_layers: int | None = None,
    num_layers: int | None = None,
    share_embeddings_and_output_weights: bool = False,
    mtp: bool = False,
) -> dict[Rank, dict[str, torch.Tensor]]:
    """Split a full Megatron state into ``{(tp_rank, pp_rank): {local_name: shard}}``.

    Args:
        full: global name -> full tensor (no tied copies).
        kinds: global name -> :class:`ParamSpec`, ``(kind, meta)`` or kind name.
        tp, pp: the target layout; ``first_stage_layers`` / ``last_stage_layers`` as in MCore.
        num_layers: defaults to the number of decoder layers in ``full``.
        share_embeddings_and_output_weights, mtp: where the last stage holds embedding copies.
    """
    layout = layout_for(
        full,
        kinds,
        tp=tp,
        pp=pp,
        first_stage_layers=first_stage_layers,
        last_stage_layers=last_stage_layers,
        num_layers=num_layers,
        share_embeddings_and_output_weights=share_embeddings_and_output_weights,
        mtp=mtp,
    )
    return split_state(full, layout)


def _check_ranks(
    shards_by_rank: Mapping[Rank, Mapping[str, torch.Tensor]], layout: ParallelLayout
) -> None:
    expected = set(layout.ranks())
    found = set(shards_by_rank)
    if found != expected:
        raise ParallelLayoutError(
            f"Expected shards for every (tp_rank, pp_rank) of tp={layout.tp}, pp={layout.pp}; "
            f"missing {sorted(expected - found)}, unexpected {sorted(found - expected)}."
        )
    for stage, names in expected_local_names(layout).items():
        want = set(names)
        for tp_rank in range(layout.tp):
            have = set(shards_by_rank[(tp_rank, stage)])
            if have != want:
                raise ParallelLayoutError(
                    f"Rank tp={tp_rank}, pp={stage} does not hold the parameters of its stage "
                    f"({layout.pipeline.describe()}): missing {sorted(want - have)[:5]}, "
                    f"unexpected {sorted(have - want)[:5]}."
                )


def merge_state(
    shards_by_rank: Mapping[Rank, Mapping[str, torch.Tensor]], layout: ParallelLayout
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`split_state`; tied copies must equal their source bit for bit."""
    _check_ranks(shards_by_rank, layout)
    full: dict[str, torch.Tensor] = {}
    for name, places in placements(layout).items():
        spec = layout.params[name]
        merged = []
        for stage, local in places:
            shards = [shards_by_rank[(r, stage)][local] for r in range(layout.tp)]
            merged.append(merge_param(name, shards, spec))
        for (stage, local), copy in zip(places[1:], merged[1:], strict=True):
            if not bitwise_equal(merged[0], copy):
                raise ParallelLayoutError(
                    f"Stage {stage}'s {local!r} should be a copy of {name!r} (tied weights) but "
                    "differs from it; the embedding group was not kept in sync. Re-save from a "
                    "synchronised model."
                )
        full[name] = merged[0]
    return full


def merge_shards(
    shards_by_rank: Mapping[Rank, Mapping[str, torch.Tensor]],
    kinds: KindsArg,
    *,
    tp: int,
    pp: int = 1,
    first_stage_layers: int | None = None,
    last_stage_layers: int | None = None,
    share_embeddings_and_output_weights: bool = False,
    mtp: bool = False,
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`split_full_state`: ``{(tp_rank, pp_rank): local state}`` -> full state.

    ``kinds`` is keyed by global name; ``vocab`` kinds need ``vocab_size`` in their metadata.
    ``num_layers`` is the sum of the stages' local layer counts (checked against the PP rule).
    """
    expected = {(r, s) for s in range(pp) for r in range(tp)}
    if set(shards_by_rank) != expected:
        raise ParallelLayoutError(
            f"Expected shards keyed by every (tp_rank, pp_rank) of tp={tp}, pp={pp}; missing "
            f"{sorted(expected - set(shards_by_rank))}, unexpected "
            f"{sorted(set(shards_by_rank) - expected, key=repr)}."
        )
    num_layers = sum(_count_layers(shards_by_rank[(0, stage)]) for stage in range(pp))
    pipeline = PipelineLayout(num_layers, pp, first_stage_layers, last_stage_layers)
    specs: dict[str, ParamSpec] = {}
    for stage in range(pp):
        for local in shards_by_rank[(0, stage)]:
            if share_embeddings_and_output_weights and pp > 1 and local == OUTPUT_WEIGHT:
                continue
            if mtp and pp > 1 and stage == pp - 1 and local.startswith("embedding."):
                continue
            name = pipeline.to_global(local, stage)
            if name not in kinds:
                raise ParallelLayoutError(
                    f"No sharding kind for {name!r} (held as {local!r} on stage {stage})."
                )
            specs[name] = as_param_spec(kinds[name])
    if share_embeddings_and_output_weights and OUTPUT_WEIGHT in specs:
        raise ParallelLayoutError(
            f"share_embeddings_and_output_weights=True with pp={pp}, yet the shards hold their own "
            f"{OUTPUT_WEIGHT!r} outside a tied copy; a tied pp=1 model has no output weight."
        )
    layout = ParallelLayout(tp, pipeline, specs, share_embeddings_and_output_weights, mtp)
    return merge_state(shards_by_rank, layout)
