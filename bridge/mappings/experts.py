"""One stacked HF tensor <-> one Megatron parameter per expert (GPT-OSS's ``mlp.experts.gate_up_proj``).

Some HF checkpoints store a layer's routed experts as one tensor ``[experts, ...]`` (GPT-OSS:
``gate_up_proj [E, hidden, 2 * ffn]``, ``down_proj [E, ffn, hidden]`` and their biases), while MCore's
local spec holds ``mlp.experts.local_experts.{e}.linear_fc1/linear_fc2`` per expert. The
:class:`StackedExpertMapping` of expert ``e`` reads slice ``e`` of the HF tensor (its Megatron pattern
has one ``*`` more than the HF one: the expert, last); its export gives that slice back, and
:class:`ExpertStacker` stacks the slices of every expert into the HF tensor once all have arrived, so the
export writes each HF tensor once, bit for bit. Under expert parallelism each rank imports only its
experts' slices (global expert numbers, :func:`bridge.conversion.global_name`) and the export gathers all.

Per expert, two layout differences may apply, each a pure transform next to its inverse:

* ``transpose``: HF multiplies ``x @ W`` (``[in, out]``), MCore's linear layers hold ``[out, in]``;
* ``interleaved``: HF alternates gate and up along the output axis (``gate = y[..., ::2]``,
  ``up = y[..., 1::2]``), MCore's gated ``linear_fc1`` holds ``[gate; up]`` (halves).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch

from bridge.errors import MappingError, WeightMismatchError
from bridge.mappings.base import MappingContext, MegatronParamMapping, _count, _fill, _regex

__all__ = [
    "ExpertStacker",
    "StackedExpertMapping",
    "halves_from_interleaved",
    "interleaved_from_halves",
    "stack_experts",
    "unstack_expert",
]


# -- pure transforms, each next to its inverse ----------------------------------------------------

def halves_from_interleaved(t: torch.Tensor) -> torch.Tensor:
    """Last axis ``[g0, u0, g1, u1, ...]`` -> ``[g0, g1, ...; u0, u1, ...]`` (a new tensor)."""
    if t.shape[-1] % 2:
        raise MappingError(f"expected an even last dimension (gate and up alternating), found shape {tuple(t.shape)}")
    return torch.cat([t[..., 0::2], t[..., 1::2]], dim=-1)


def interleaved_from_halves(t: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`halves_from_interleaved`: last axis ``[gate; up]`` -> gate and up alternating."""
    if t.shape[-1] % 2:
        raise MappingError(f"expected an even last dimension ([gate; up]), found shape {tuple(t.shape)}")
    half = t.shape[-1] // 2
    return torch.stack([t[..., :half], t[..., half:]], dim=-1).reshape(t.shape)


def unstack_expert(stacked: torch.Tensor, index: int, *, num_experts: int) -> torch.Tensor:
    """Expert ``index`` of a ``[num_experts, ...]`` tensor (a view)."""
    if stacked.dim() < 1 or stacked.shape[0] != num_experts:
        raise MappingError(f"expected a stacked tensor of {num_experts} experts (dim 0), found shape "
                         f"{tuple(stacked.shape)}; check num_local_experts in config.json")
    if not 0 <= index < num_experts:
        raise MappingError(f"expected an expert index in [0, {num_experts}), found {index}")
    return stacked[index]


def stack_experts(slices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`unstack_expert` over every index: ``[num_experts, ...]`` from the experts in order."""
    if not slices:
        raise MappingError("expected at least one expert slice, found none")
    return torch.stack(list(slices), dim=0)


# -- the mapping ----------------------------------------------------------------------------------

class StackedExpertMapping(MegatronParamMapping):
    """Megatron ``...local_experts.*.X`` (layer, expert) <-> slice ``expert`` of HF ``...experts.Y`` (layer).

    ``num_experts`` is the HF tensor's first dimension; ``transpose`` and ``interleaved`` describe one
    expert's HF layout (module docstring). ``sharding`` is the Megatron parameter's TP kind as for any
    mapping (a gated ``linear_fc1``: ``"gated"``).
    """

    kind = "stacked_expert"

    def __init__(self, megatron_param: str, hf_param: str, *, num_experts: int, transpose: bool = False,
                 interleaved: bool = False, sharding: str | None = None, export: bool = True) -> None:
        if not isinstance(hf_param, str):
            raise MappingError(f"StackedExpertMapping maps one HF tensor, found {hf_param!r}")
        if not isinstance(num_experts, int) or num_experts < 1:
            raise MappingError(f"StackedExpertMapping needs num_experts >= 1, found {num_experts!r}")
        self.num_experts = num_experts
        self.transpose = transpose
        self.interleaved = interleaved
        self.expert: int | None = None  # set by resolve()
        super().__init__(megatron_param, hf_param, sharding=sharding, export=export)

    def _validate(self) -> None:
        n, h = _count(self.megatron_param), _count(str(self.hf_param))
        if n != h + 1:
            raise MappingError(
                f"StackedExpertMapping: the Megatron pattern {self.megatron_param!r} needs exactly one '*' more "
                f"than the HF pattern {self.hf_param!r} (the expert, last), found {n} and {h}"
            )

    def resolve(self, captures: tuple[str, ...]) -> "StackedExpertMapping":
        """Wildcards filled from a Megatron name's captures (layer..., expert); from an HF name's captures
        (one fewer), the expert stays a wildcard."""
        n = _count(self.megatron_param)
        if len(captures) not in (n, n - 1):
            raise MappingError(f"{self!r}: expected {n} or {n - 1} captures, found {captures!r}")
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.hf_param = _fill(str(self.hf_param), captures[: n - 1])
        if len(captures) == n:
            clone.megatron_param, clone.expert = _fill(self.megatron_param, captures), int(captures[-1])
        else:
            clone.megatron_param = _fill(self.megatron_param, (*captures, "*"))
        clone._megatron_re = _regex(clone.megatron_param)
        return clone

    def _expert(self) -> int:
        if self.expert is None:
            raise MappingError(f"{self!r} is not resolved to one expert; look it up by its Megatron name")
        return self.expert

    def expert_to_megatron(self, t: torch.Tensor) -> torch.Tensor:
        """One expert's HF slice -> its Megatron parameter (full, before TP)."""
        if self.interleaved:
            t = halves_from_interleaved(t)
        return t.transpose(0, 1).contiguous() if self.transpose else t.contiguous()

    def expert_to_hf(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`expert_to_megatron`."""
        if self.transpose:
            t = t.transpose(0, 1)
        return (interleaved_from_halves(t) if self.interleaved else t).contiguous()

    def hf_to_megatron(self, hf: Mapping[str, torch.Tensor], ctx: MappingContext) -> torch.Tensor:
        name = str(self.hf_param)
        return self.expert_to_megatron(unstack_expert(hf[name], self._expert(), num_experts=self.num_experts))

    def megatron_to_hf(self, tensor: torch.Tensor, ctx: MappingContext) -> dict[str, torch.Tensor]:
        """This expert's slice of the HF tensor; :class:`ExpertStacker` assembles the whole tensor."""
        self._expert()
        return {str(self.hf_param): self.expert_to_hf(tensor)}


# -- assembling the export ------------------------------------------------------------------------

class ExpertStacker:
    """Turns the exported ``(hf_name, tensor)`` of each mapping into whole HF tensors.

    Tensors of other mappings pass straight through; slices of a :class:`StackedExpertMapping` are held
    until every expert of their HF tensor has arrived, then stacked (an exporter that walks parameters in
    name order holds one layer's experts at most). :meth:`finish` raises if a tensor is left incomplete.
    """

    def __init__(self) -> None:
        self._open: dict[str, dict[int, torch.Tensor]] = {}
        self._count: dict[str, int] = {}

    def add(self, mapping: MegatronParamMapping, hf_name: str,
            tensor: torch.Tensor) -> Iterable[tuple[str, torch.Tensor]]:
        """What is ready to write after ``tensor`` (``mapping``'s export of ``hf_name``) arrives."""
        if not isinstance(mapping, StackedExpertMapping):
            return [(hf_name, tensor)]
        index = mapping._expert()
        slots = self._open.setdefault(hf_name, {})
        self._count[hf_name] = mapping.num_experts
        if index in slots:
            raise MappingError(f"expert {index} of HF tensor {hf_name!r} exported twice")
        slots[index] = tensor
        if len(slots) < mapping.num_experts:
            return []
        del self._open[hf_name], self._count[hf_name]
        return [(hf_name, stack_experts([slots[i] for i in range(mapping.num_experts)]))]

    @property
    def pending(self) -> dict[str, list[int]]:
        """HF tensor -> the expert indices still missing, sorted."""
        return {n: sorted(set(range(self._count[n])) - set(s)) for n, s in sorted(self._open.items())}

    def finish(self) -> None:
        """Raise if some stacked HF tensor did not receive every expert."""
        if self._open:
            raise WeightMismatchError(
                f"{len(self._open)} stacked HF tensor(s) are missing experts after the export: {self.pending}. "
                "Every expert parameter must be exported (check expert parallelism and the mapping table)."
            )
