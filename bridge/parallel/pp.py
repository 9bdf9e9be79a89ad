"""Pipeline-parallel placement: which stage owns which parameter, and global <-> local names.

Layer counts follow MCore (``get_num_layers_to_build`` / ``get_transformer_layer_offset``):

* without overrides, ``num_layers`` is split evenly (``num_layers % pp == 0``);
* ``num_layers_in_first_pipeline_stage`` / ``num_layers_in_last_pipeline_stage`` fix the first /
  last stage; the remaining layers are split evenly over the other ("middle") stages, which must
  then receive at least one layer each, or none at all when there is no middle stage.

Stage ``s`` builds global layers ``offset(s) .. offset(s) + size(s) - 1`` and names them
``decoder.layers.0 .. size(s) - 1`` locally. Other parameters (names relative to ``GPTModel``):
``embedding.*`` lives on the first stage; ``output_layer.*``, ``decoder.final_layernorm.*`` and
the multi-token-prediction block ``mtp.*`` (whose layer numbers are local to the block, hence
left untouched) on the last stage.

Copies: with ``share_embeddings_and_output_weights=True`` and ``pp > 1``, MCore's
``LanguageModule.setup_embeddings_and_output_layer`` gives the last stage its own
``output_layer.weight``, fills it with zeros, and all-reduces it with the first stage's
``embedding.word_embeddings.weight`` over the embedding group, so the two start equal; the
gradients are all-reduced over the same group at every step, so they stay equal. With MTP on a
last stage that is not the first, that stage similarly holds a copy of ``embedding.*``. With
``pp == 1`` no copy exists (the output layer reads the embedding weight directly).
:meth:`PipelineLayout.copies` lists these copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import check_rank, check_size, divisors

__all__ = ["PipelineLayout", "StageCopy"]

_LAYER = re.compile(r"^decoder\.layers\.(?P<idx>\d+)(?P<tail>\..+)?$")
_FIRST_PREFIXES = ("embedding.",)
_LAST_PREFIXES = ("output_layer.", "decoder.final_layernorm.", "mtp.")
WORD_EMBEDDING = "embedding.word_embeddings.weight"
OUTPUT_WEIGHT = "output_layer.weight"


@dataclass(frozen=True)
class StageCopy:
    """A parameter a stage holds as a copy of another stage's parameter (tied weights)."""

    stage: int
    local_name: str
    source: str


@dataclass(frozen=True)
class PipelineLayout:
    """Which global decoder layers each of ``pp`` stages owns.

    Attributes:
        num_layers: ``TransformerConfig.num_layers``.
        pp: pipeline-parallel size.
        first_stage_layers: ``num_layers_in_first_pipeline_stage`` (``None``: even split).
        last_stage_layers: ``num_layers_in_last_pipeline_stage`` (``None``: even split).
    """

    num_layers: int
    pp: int = 1
    first_stage_layers: int | None = None
    last_stage_layers: int | None = None
    sizes: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", self._stage_sizes())

    def _stage_sizes(self) -> tuple[int, ...]:
        check_size(self.num_layers, "num_layers")
        check_size(self.pp, "pp")
        first, last, n, pp = (
            self.first_stage_layers,
            self.last_stage_layers,
            self.num_layers,
            self.pp,
        )
        for knob, value in (("first_stage_layers", first), ("last_stage_layers", last)):
            if value is not None:
                check_size(value, knob)
        if pp == 1:
            for knob, value in (("first_stage_layers", first), ("last_stage_layers", last)):
                if value is not None and value != n:
                    raise ParallelLayoutError(
                        f"With pp=1 the only stage holds all {n} layers, but {knob}={value}. "
                        f"Drop {knob} or set pp > 1."
                    )
            return (n,)
        if first is None and last is None:
            if n % pp != 0:
                raise ParallelLayoutError(
                    f"num_layers={n} cannot be split evenly over pp={pp} pipeline stages. Use a pp "
                    f"that divides {n} ({', '.join(map(str, divisors(n)))}), or set "
                    "first_stage_layers / last_stage_layers (num_layers_in_first/last_pipeline_stage)."
                )
            return (n // pp,) * pp
        middle_stages = pp - (first is not None) - (last is not None)
        middle_layers = n - (first or 0) - (last or 0)
        overrides = f"first_stage_layers={first}, last_stage_layers={last}"
        if middle_stages == 0 and middle_layers != 0:
            raise ParallelLayoutError(
                f"With pp={pp} and {overrides}, the first and last stages must hold all "
                f"num_layers={n} layers, but they hold {n - middle_layers}. Make them add up to {n}."
            )
        if middle_stages > 0 and (middle_layers <= 0 or middle_layers % middle_stages != 0):
            raise ParallelLayoutError(
                f"With pp={pp} and {overrides}, the remaining {middle_layers} of num_layers={n} "
                f"layers must split evenly, at least one each, over the other {middle_stages} "
                f"stage(s). Choose overrides so that num_layers minus them is a positive multiple "
                f"of {middle_stages}."
            )
        each = middle_layers // middle_stages if middle_stages else 0
        sizes = [each] * pp
        if first is not None:
            sizes[0] = first
        if last is not None:
            sizes[-1] = last
        return tuple(sizes)

    # --- layers -------------------------------------------------------------------------------

    def offset(self, stage: int) -> int:
        """The global number of ``stage``'s first layer."""
        check_rank(stage, self.pp, "PP")
        return sum(self.sizes[:stage])

    def layers(self, stage: int) -> range:
        """The global layer numbers ``stage`` owns."""
        start = self.offset(stage)
        return range(start, start + self.sizes[stage])

    def stage_of_layer(self, layer: int) -> int:
        """The stage that owns global ``layer``."""
        if not 0 <= layer < self.num_layers:
            raise ParallelLayoutError(
                f"Layer {layer} does not exist: the model has num_layers={self.num_layers} "
                f"(layers 0..{self.num_layers - 1})."
            )
        end = 0
        for stage, size in enumerate(self.sizes):
            end += size
            if layer < end:
                return stage
        raise AssertionError("unreachable: sizes add up to num_layers")

    # --- names --------------------------------------------------------------------------------

    def owner(self, name: str) -> int:
        """The stage that owns the (global) parameter ``name``."""
        match = _LAYER.match(name)
        if match:
            return self.stage_of_layer(int(match["idx"]))
        if name.startswith(_FIRST_PREFIXES):
            return 0
        if name.startswith(_LAST_PREFIXES):
            return self.pp - 1
        raise ParallelLayoutError(
            f"No pipeline stage rule for {name!r}: expected a GPTModel parameter named "
            "'decoder.layers.{i}.*', 'embedding.*', 'decoder.final_layernorm.*', "
            "'output_layer.*' or 'mtp.*' (without a wrapper prefix such as 'module.')."
        )

    def owns(self, name: str, stage: int) -> bool:
        """Whether ``stage`` owns the global parameter ``name`` (copies excluded)."""
        check_rank(stage, self.pp, "PP")
        return self.owner(name) == stage

    def to_local(self, name: str) -> tuple[int, str]:
        """``(stage, local_name)`` for a global parameter name."""
        stage = self.owner(name)
        match = _LAYER.match(name)
        if match is None:
            return stage, name
        local = int(match["idx"]) - self.offset(stage)
        return stage, f"decoder.layers.{local}{match['tail'] or ''}"

    def to_global(self, local_name: str, stage: int) -> str:
        """Inverse of :meth:`to_local`: the global name of ``stage``'s ``local_name``."""
        check_rank(stage, self.pp, "PP")
        match = _LAYER.match(local_name)
        if match is None:
            owner = self.owner(local_name)
            if owner != stage:
                raise ParallelLayoutError(
                    f"{local_name!r} belongs to pipeline stage {owner}, not stage {stage} "
                    f"(pp={self.pp}). Check that the shards are keyed by the right PP rank."
                )
            return local_name
        local = int(match["idx"])
        if local >= self.sizes[stage]:
            raise ParallelLayoutError(
                f"{local_name!r} on pipeline stage {stage} names local layer {local}, but that "
                f"stage holds {self.sizes[stage]} layer(s) ({self.describe()})."
            )
        return f"decoder.layers.{self.offset(stage) + local}{match['tail'] or ''}"

    def copies(
        self,
        names: Iterable[str],
        *,
        share_embeddings_and_output_weights: bool = False,
        mtp: bool = False,
    ) -> tuple[StageCopy, ...]:
        """The tied copies the last stage holds for the global parameters ``names``.

        ``share_embeddings_and_output_weights`` adds ``output_layer.weight`` as a copy of the word
        embedding; ``mtp`` adds every ``embedding.*`` under its own name. Both only for ``pp > 1``.
        """
        if self.pp == 1:
            return ()
        names = list(names)
        last = self.pp - 1
        out: list[StageCopy] = []
        if share_embeddings_and_output_weights:
            if WORD_EMBEDDING not in names:
                raise ParallelLayoutError(
                    f"share_embeddings_and_output_weights=True but there is no {WORD_EMBEDDING!r} "
                    "to copy to the last stage's output layer."
                )
            out.append(StageCopy(last, OUTPUT_WEIGHT, WORD_EMBEDDING))
        if mtp:
            out.extend(StageCopy(last, n, n) for n in names if n.startswith(_FIRST_PREFIXES))
        return tuple(out)

    def describe(self) -> str:
        """A short human-readable summary, e.g. ``pp=3 stages [2, 3, 3]``."""
        return f"num_layers={self.num_layers}, pp={self.pp}, layers per stage {list(self.sizes)}"
