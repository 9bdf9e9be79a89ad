"""What a sharded Megatron state *is*: per-parameter sharding specs and the whole parallel layout.

:class:`ParamSpec` says how one (global) parameter is sharded; :class:`ParallelLayout` adds the
TP size and the :class:`~bridge.parallel.pp.PipelineLayout`. Both convert to and from the plain
JSON written as ``layout.json`` (see :mod:`bridge.parallel.layout_io`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch

from bridge.checkpoint.format import DTYPES
from bridge.errors import ParallelLayoutError
from bridge.parallel._common import check_size
from bridge.parallel.fit import check_tp_fits
from bridge.parallel.kinds import check_meta
from bridge.parallel.layout_schema import check_layout_document
from bridge.parallel.pp import PipelineLayout
from bridge.parallel.vocab import DEFAULT_DIVISIBLE_BY

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ParallelLayout",
    "ParamSpec",
    "as_param_spec",
    "dtype_from_name",
]

FORMAT = "mcore-compat.parallel-layout"
FORMAT_VERSION = 1

#: ``layout.json`` dtype names (``"bfloat16"``), derived from the one dtype table (safetensors codes).
_DTYPES: dict[str, torch.dtype] = {str(dtype).removeprefix("torch."): dtype for dtype in DTYPES.values()}


def dtype_from_name(name: str) -> torch.dtype:
    """``"bfloat16"`` -> ``torch.bfloat16`` (the names ``layout.json`` uses)."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ParallelLayoutError(
            f"Unsupported dtype {name!r}; expected one of {sorted(_DTYPES)}."
        ) from None


@dataclass(frozen=True)
class ParamSpec:
    """How one global parameter is sharded.

    Attributes:
        kind: a sharding kind (:data:`bridge.parallel.kinds.KINDS`).
        meta: the kind's metadata, e.g. ``{"num_query_groups": 8}``.
        dtype: the parameter's dtype, or ``None`` when unknown.
        shape: the full (merged, unpadded) shape, or ``None`` when unknown.
    """

    kind: str
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)
    dtype: torch.dtype | None = None
    shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    def completed(self, tensor: torch.Tensor, *, name: str = "<tensor>") -> ParamSpec:
        """This spec with dtype, shape and (for ``vocab``) ``vocab_size``/``divisible_by`` filled in."""
        meta = dict(self.meta)
        if self.kind == "vocab":
            meta.setdefault("vocab_size", int(tensor.shape[0]))
            meta.setdefault("divisible_by", DEFAULT_DIVISIBLE_BY)
        spec = replace(self, meta=meta, dtype=tensor.dtype, shape=tuple(tensor.shape))
        check_meta(spec.kind, spec.meta, name=name, for_merge=True)
        return spec

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``dtype`` as its short name)."""
        out: dict[str, Any] = {"kind": self.kind, "meta": dict(self.meta)}
        if self.dtype is not None:
            out["dtype"] = str(self.dtype).removeprefix("torch.")
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParamSpec:
        """Inverse of :meth:`to_json`."""
        dtype = data.get("dtype")
        shape = data.get("shape")
        return cls(
            kind=str(data["kind"]),
            meta=dict(data.get("meta", {})),
            dtype=None if dtype is None else dtype_from_name(dtype),
            shape=None if shape is None else tuple(shape),
        )


def as_param_spec(value: ParamSpec | tuple[str, Mapping[str, Any]] | str) -> ParamSpec:
    """Accept a :class:`ParamSpec`, a ``(kind, meta)`` pair, or a bare kind name."""
    if isinstance(value, ParamSpec):
        return value
    if isinstance(value, str):
        return ParamSpec(value)
    kind, meta = value
    return ParamSpec(kind, meta)


@dataclass(frozen=True)
class ParallelLayout:
    """A TP x PP layout of one model, with the sharding of every global parameter.

    Construction checks that ``tp`` splits every parameter whose shape is recorded
    (:func:`~bridge.parallel.fit.check_tp_fits`): one error lists every rule it breaks and the
    TP sizes that would fit.

    Attributes:
        tp: tensor-parallel size.
        pipeline: the pipeline stages.
        params: global parameter name -> :class:`ParamSpec` (the full model, copies excluded).
        share_embeddings_and_output_weights: tied word embedding / output layer.
        mtp: the model has a multi-token-prediction block (it copies ``embedding.*`` to the
            last stage when ``pp > 1``).
        model_class: the MCore model whose names ``params`` follow, ``"gpt"`` (``GPTModel``) or ``"hybrid"``
            (``HybridModel``: ``decoder.layers.{2i}`` / ``{2i+1}``, see :mod:`bridge.hybrid`); the pipeline
            counts GPT blocks either way. :meth:`relabeled` turns one into the other.
    """

    tp: int
    pipeline: PipelineLayout
    params: Mapping[str, ParamSpec] = field(default_factory=dict, hash=False)
    share_embeddings_and_output_weights: bool = False
    mtp: bool = False
    model_class: str = "gpt"

    def __post_init__(self) -> None:
        check_size(self.tp, "tp")
        if self.model_class not in ("gpt", "hybrid"):
            raise ParallelLayoutError(f"model_class must be 'gpt' or 'hybrid', found {self.model_class!r}")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        experts = [
            n for n, s in self.params.items() if s.kind == "expert" and s.meta.get("ep", 1) != 1
        ]
        if experts:
            raise ParallelLayoutError(
                f"{experts[:3]} use expert parallelism (ep > 1), but a ParallelLayout covers TP x "
                "PP ranks only. Split experts with bridge.parallel.expert, or map them per expert "
                "with ep=1."
            )
        check_tp_fits(self.params, self.tp)

    @property
    def pp(self) -> int:
        """Pipeline-parallel size."""
        return self.pipeline.pp

    def ranks(self) -> list[tuple[int, int]]:
        """Every ``(tp_rank, pp_rank)`` in file order (PP-major)."""
        return [(r, s) for s in range(self.pp) for r in range(self.tp)]

    def with_parallelism(
        self,
        *,
        tp: int,
        pp: int,
        first_stage_layers: int | None = None,
        last_stage_layers: int | None = None,
    ) -> ParallelLayout:
        """The same model and parameters at another TP x PP layout."""
        pipeline = PipelineLayout(
            self.pipeline.num_layers, pp, first_stage_layers, last_stage_layers
        )
        return replace(self, tp=tp, pipeline=pipeline)

    def relabeled(self, model_class: str) -> ParallelLayout:
        """The same layout under ``model_class``'s parameter names (``"gpt"`` or ``"hybrid"``)."""
        from bridge.hybrid import rename_for

        if model_class == self.model_class:
            return self
        rename = rename_for(self.model_class, model_class)
        return replace(self, params={rename(n): s for n, s in self.params.items()}, model_class=model_class)

    def to_json(self) -> dict[str, Any]:
        """The ``layout.json`` document."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "tp": self.tp,
            "pp": self.pp,
            "num_layers": self.pipeline.num_layers,
            "first_stage_layers": self.pipeline.first_stage_layers,
            "last_stage_layers": self.pipeline.last_stage_layers,
            "share_embeddings_and_output_weights": self.share_embeddings_and_output_weights,
            "mtp": self.mtp,
            "model_class": self.model_class,
            "params": {name: spec.to_json() for name, spec in self.params.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "layout.json") -> ParallelLayout:
        """Inverse of :meth:`to_json`; raises :class:`ParallelLayoutError` naming ``source`` on a foreign or
        malformed document (every field's type is checked first: :mod:`bridge.parallel.layout_schema`)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            found = (data.get("format"), data.get("version")) if isinstance(data, Mapping) else (None, None)
            raise ParallelLayoutError(
                f"{source}: Not a layout this version can read: expected format {FORMAT!r} version "
                f"{FORMAT_VERSION}, found {found[0]!r} version {found[1]!r}."
            )
        check_layout_document(data, source=source)  # exact types from here on: no coercion below
        try:
            pipeline = PipelineLayout(
                data["num_layers"], data["pp"], data.get("first_stage_layers"), data.get("last_stage_layers")
            )
            params = {name: ParamSpec.from_json(spec) for name, spec in data["params"].items()}
            return cls(
                tp=data["tp"],
                pipeline=pipeline,
                params=params,
                share_embeddings_and_output_weights=data.get("share_embeddings_and_output_weights", False),
                mtp=data.get("mtp", False),
                model_class=data.get("model_class", "gpt"),  # files before HybridModel support: GPT names
            )
        except ParallelLayoutError as exc:
            if str(exc).startswith(source):
                raise
            raise ParallelLayoutError(f"{source}: {exc}") from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise ParallelLayoutError(
                f"{source}: malformed layout document: {exc!r} is missing or invalid."
            ) from exc
