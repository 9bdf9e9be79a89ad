"""Expert parallelism (MoE): experts split across EP ranks, and a TP kind inside each expert.

MCore places expert ``e`` of ``num_experts`` on EP rank ``e // (num_experts / ep)`` as local
expert ``e % (num_experts / ep)``: EP ranks hold contiguous blocks of experts, so
``num_experts % ep == 0`` is required. Within an expert the weights are sharded over the expert
tensor-parallel group like a dense MLP: ``gated`` (or ``column``) for ``linear_fc1``, ``row`` for
``linear_fc2``.

Two representations are supported:

* a *stack* ``[num_experts, ...]`` (or a list of per-expert tensors): :func:`split_experts` /
  :func:`merge_experts` split it across EP ranks, :func:`split_expert_stack` /
  :func:`merge_expert_stack` do EP and the inner TP kind at once;
* per-expert *names*: :func:`expert_name_to_local` / :func:`expert_name_to_global` convert
  ``...experts.local_experts.{e}...`` (``SequentialMLP``) and ``...experts.linear_fc1.weight{e}``
  (``TEGroupedMLP``) between global and EP-local expert numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch

from bridge.errors import ParallelLayoutError
from bridge.parallel import tp as _tp
from bridge.parallel._common import check_rank, check_size, require_divisible

__all__ = [
    "INNER_KINDS",
    "expert_name_to_global",
    "expert_name_to_local",
    "expert_stack_shard_shape",
    "merge_expert_stack",
    "merge_experts",
    "split_expert_stack",
    "split_experts",
]

_DEFAULT_NAME = "<experts>"

_Split = Callable[..., list[torch.Tensor]]
_Merge = Callable[..., torch.Tensor]
_ShardShape = Callable[..., tuple[int, ...]]

#: TP kinds allowed inside one expert: name -> (split, merge, shard_shape).
INNER_KINDS: dict[str, tuple[_Split, _Merge, _ShardShape]] = {
    "column": (_tp.split_column, _tp.merge_column, _tp.column_shard_shape),
    "row": (_tp.split_row, _tp.merge_row, _tp.row_shard_shape),
    "gated": (_tp.split_gated, _tp.merge_gated, _tp.gated_shard_shape),
    "replicated": (_tp.split_replicated, _tp.merge_replicated, _tp.replicated_shard_shape),
}


def _inner(kind: str, *, name: str) -> tuple[_Split, _Merge, _ShardShape]:
    if kind not in INNER_KINDS:
        raise ParallelLayoutError(
            f"Unknown TP kind {kind!r} inside the experts of {name!r}; expected one of "
            f"{sorted(INNER_KINDS)}."
        )
    return INNER_KINDS[kind]


def split_experts(
    experts: torch.Tensor | Sequence[torch.Tensor], *, ep: int, name: str = _DEFAULT_NAME
) -> list[torch.Tensor] | list[list[torch.Tensor]]:
    """Split a stack ``[num_experts, ...]`` (or a list of experts) into ``ep`` contiguous blocks."""
    check_size(ep, "ep")
    count = experts.shape[0] if isinstance(experts, torch.Tensor) else len(experts)
    require_divisible(count, ep, name=name, what="num_experts", knob="ep")
    if isinstance(experts, torch.Tensor):
        return [piece.contiguous() for piece in torch.chunk(experts, ep, dim=0)]
    per_rank = count // ep
    return [list(experts[i * per_rank : (i + 1) * per_rank]) for i in range(ep)]


def merge_experts(
    shards: Sequence[torch.Tensor] | Sequence[Sequence[torch.Tensor]], *, name: str = _DEFAULT_NAME
) -> torch.Tensor | list[torch.Tensor]:
    """Inverse of :func:`split_experts`: concatenate the EP ranks' blocks in rank order."""
    if len(shards) == 0:
        raise ParallelLayoutError(f"Cannot merge the experts of {name!r}: no EP shards given.")
    sizes = {len(s) for s in shards}
    if len(sizes) != 1:
        raise ParallelLayoutError(
            f"EP ranks of {name!r} hold different numbers of experts ({[len(s) for s in shards]}); "
            "every EP rank must hold num_experts / ep experts."
        )
    if isinstance(shards[0], torch.Tensor):
        return torch.cat(list(shards), dim=0)  # type: ignore[arg-type]
    return [expert for block in shards for expert in block]


def expert_stack_shard_shape(
    shape: Sequence[int], *, tp: int, ep: int, inner: str = "column", name: str = _DEFAULT_NAME
) -> tuple[int, ...]:
    """The shape of each :func:`split_expert_stack` shard; raises if EP or TP cannot split."""
    check_size(tp, "tp")
    check_size(ep, "ep")
    _, _, inner_shape = _inner(inner, name=name)
    if len(shape) < 2:
        raise ParallelLayoutError(
            f"Expert stack {name!r} has shape {tuple(shape)}; expected [num_experts, ...] with at "
            "least one dimension per expert."
        )
    require_divisible(shape[0], ep, name=name, what="num_experts", knob="ep")
    return (shape[0] // ep, *inner_shape(tuple(shape[1:]), tp=tp, name=name))


def split_expert_stack(
    stack: torch.Tensor,
    *,
    tp: int,
    ep: int,
    inner: str = "column",
    name: str = _DEFAULT_NAME,
) -> list[torch.Tensor]:
    """Split ``[num_experts, ...]`` over EP ranks, then each expert by the ``inner`` TP kind.

    Returns:
        ``ep * tp`` stacks ``[num_experts / ep, ...]``; the shard of EP rank ``e`` and TP rank
        ``t`` is at index ``e * tp + t``.
    """
    expert_stack_shard_shape(stack.shape, tp=tp, ep=ep, inner=inner, name=name)
    split_inner, _, _ = _inner(inner, name=name)
    out: list[torch.Tensor] = []
    for block in split_experts(stack, ep=ep, name=name):
        per_expert = [split_inner(expert, tp=tp, name=name) for expert in block]  # type: ignore[union-attr]
        out.extend(torch.stack([shards[t] for shards in per_expert]) for t in range(tp))
    return out


def merge_expert_stack(
    shards: Sequence[torch.Tensor], *, ep: int, inner: str = "column", name: str = _DEFAULT_NAME
) -> torch.Tensor:
    """Inverse of :func:`split_expert_stack` (``shards`` in ``e * tp + t`` order)."""
    check_size(ep, "ep")
    _, merge_inner, _ = _inner(inner, name=name)
    require_divisible(len(shards), ep, name=name, what="the number of shards", knob="ep")
    tp = len(shards) // ep
    blocks = []
    for e in range(ep):
        ranks = shards[e * tp : (e + 1) * tp]
        local = {r.shape[0] for r in ranks}
        if len(local) != 1:
            raise ParallelLayoutError(
                f"TP shards of EP rank {e} of {name!r} hold different numbers of experts: "
                f"{[r.shape[0] for r in ranks]}."
            )
        experts = [merge_inner([r[i] for r in ranks], name=name) for i in range(ranks[0].shape[0])]
        blocks.append(torch.stack(experts))
    return merge_experts(blocks, name=name)  # type: ignore[return-value]


# --- names ------------------------------------------------------------------------------------

_SEQUENTIAL = re.compile(r"^(?P<head>.*\.experts\.local_experts\.)(?P<idx>\d+)(?P<tail>\..*)$")
_GROUPED = re.compile(
    r"^(?P<head>.*\.experts\.linear_fc[12]\.(?:weight|bias))(?P<idx>\d+)(?P<tail>)$"
)


def _match(name: str) -> re.Match[str]:
    match = _SEQUENTIAL.match(name) or _GROUPED.match(name)
    if match is None:
        raise ParallelLayoutError(
            f"{name!r} is not a per-expert parameter name; expected '...experts.local_experts."
            "{e}.<param>' (SequentialMLP) or '...experts.linear_fc1.weight{e}' (TEGroupedMLP)."
        )
    return match


def _per_rank(num_experts: int, ep: int, name: str) -> int:
    check_size(ep, "ep")
    require_divisible(num_experts, ep, name=name, what="num_experts", knob="ep")
    return num_experts // ep


def expert_name_to_local(name: str, *, num_experts: int, ep: int) -> tuple[int, str]:
    """``(ep_rank, local_name)`` for a name carrying a global expert number."""
    match = _match(name)
    per_rank = _per_rank(num_experts, ep, name)
    expert = int(match["idx"])
    if expert >= num_experts:
        raise ParallelLayoutError(
            f"{name!r} names expert {expert} but the model has num_experts={num_experts}."
        )
    return expert // per_rank, f"{match['head']}{expert % per_rank}{match['tail']}"


def expert_name_to_global(local_name: str, ep_rank: int, *, num_experts: int, ep: int) -> str:
    """Inverse of :func:`expert_name_to_local`."""
    match = _match(local_name)
    per_rank = _per_rank(num_experts, ep, local_name)
    check_rank(ep_rank, ep, "EP")
    local = int(match["idx"])
    if local >= per_rank:
        raise ParallelLayoutError(
            f"{local_name!r} names local expert {local} but each EP rank holds only {per_rank} "
            f"experts (num_experts={num_experts}, ep={ep})."
        )
    return f"{match['head']}{ep_rank * per_rank + local}{match['tail']}"
