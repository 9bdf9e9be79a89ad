"""``export_ckpt`` with no model built: a ``torch_dist`` checkpoint -> HF safetensors, straight from its records.

The inverse of :mod:`bridge.megatron_ckpt.offline`. Each MCore sharded key of the tensor index becomes the
Megatron parameters it stacks (``decoder.layers.{i}.<name>``, the local spec's norm keys renamed back through
:data:`PARAM_OF_LAYER_KEY`, the derived inverse of :data:`~bridge.megatron_ckpt.offline.LAYER_KEY_RENAMES`),
the saved layout's export planner (:func:`bridge.streaming.plan.plan_export`) turns them into HF tensors, and
each is written at its final place in the output shards from byte spans of the ``.distcp`` records
(:class:`~bridge.megatron_ckpt.records.DistcpTensors`), copied file to file: no model, no GPU, no
``dist_checkpointing``, peak memory about one parameter (a checkpoint written at TP > 1 assembles a layer's
chunks in memory).

What the checkpoint must hold is checked before anything is written, key for key and shape for shape: against
mcore-compat's record (it lists every tensor the model had) or, for a checkpoint Megatron-LM wrote, against the
sharded state dict of the model built on the meta device (no memory, no data: the same expectation the
model-built reader checks); anything else the index holds (optimizer state, RNG) is not read. It covers GPTModel
names without mixture of experts (:func:`offline_refusal` says why not otherwise, and ``export_ckpt`` then builds
the model). The HF output is the model-built export's: the same tensors and dtypes (the source's, recorded at
import, else the HF config's), the same ``config.json`` and companion files (a test compares the two).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import torch

from bridge._logging import get_logger
from bridge.errors import CheckpointError, UnsupportedFeatureError
from bridge.megatron_ckpt.keys import COMMON_PREFIX, expected_by_model
from bridge.megatron_ckpt.layout import CheckpointDirs, hf_dtype_of
from bridge.megatron_ckpt.offline import LAYER_KEY_RENAMES
from bridge.megatron_ckpt.records import DistcpTensors

__all__ = ["PARAM_OF_LAYER_KEY", "OfflineExport", "config_dtype", "export_dtype", "export_offline", "offline_refusal",
           "plan_offline_export"]

log = get_logger("megatron_ckpt.offline_export")

#: MCore sharded key (layer-less) -> the layer-local parameter name it holds: the inverse of LAYER_KEY_RENAMES.
PARAM_OF_LAYER_KEY = {key: name for name, key in LAYER_KEY_RENAMES.items()}
assert len(PARAM_OF_LAYER_KEY) == len(LAYER_KEY_RENAMES), "LAYER_KEY_RENAMES must be one-to-one"
_LAYERS = "decoder.layers."


def export_dtype(record: dict[str, Any] | None, name: str, dtype: torch.dtype,
                 config: torch.dtype | None) -> torch.dtype:
    """The dtype HF tensor ``name`` (stored as ``dtype``) is exported in: the source's (recorded at import),
    else the HF config's for floating tensors, else as stored. MCore keeps norms in float32 where the HF source
    has bf16, so without this a bf16 model came back with float32 norms."""
    recorded = hf_dtype_of(record, name)
    if recorded is not None:
        return getattr(torch, recorded)
    if config is not None and dtype.is_floating_point and config.is_floating_point:
        return config
    return dtype


def config_dtype(hf_config: Any) -> torch.dtype | None:
    """The HF config's ``dtype`` (``torch_dtype`` before transformers 4.56), None if unset: the one reader."""
    from bridge.models.hf_config import torch_dtype

    return torch_dtype(hf_config, default=None)


def parameters_of(tensors: DistcpTensors, keys: list[str]) -> dict[str, tuple[str, int | None]]:
    """Megatron parameter name -> ``(sharded key, layer or None)`` for the index's tensors ``keys``."""
    out: dict[str, tuple[str, int | None]] = {}
    for key in keys:
        if not key.startswith(_LAYERS):
            out[key] = (key, None)
            continue
        rest = key[len(_LAYERS):]
        for layer in range(tensors.size(key)[0]):
            out[f"{_LAYERS}{layer}.{PARAM_OF_LAYER_KEY.get(rest, rest)}"] = (key, layer)
    return out


@dataclasses.dataclass(frozen=True)
class OfflineExport:
    """What :func:`plan_offline_export` decided: every HF tensor to write and where its Megatron parameter is."""

    tensors: DistcpTensors
    planned: list[Any]  # (megatron name, mapping, [HFTensorPlan in the export dtype])
    sources: dict[str, tuple[str, int | None]]
    layout: Any
    ctx: Any


def offline_refusal(writer_class: str, provider: Any) -> str | None:
    """Why a checkpoint of ``writer_class`` names (``"gpt"``/``"hybrid"``) for ``provider`` cannot be exported
    without a model (None: it can)."""
    if writer_class != "gpt":
        return f"its parameters follow {writer_class!r} names (the offline reader knows GPTModel's)"
    if provider.num_moe_experts:
        return "it is a mixture-of-experts model (MCore stacks experts along another axis)"
    return None


def plan_offline_export(dirs: CheckpointDirs, record: dict[str, Any] | None, family: Any, provider: Any,
                        hf_config: Any, index: Any, *, writer_class: str) -> OfflineExport:
    """Everything the offline export writes, decided from the index, the record (or the model on the meta
    device) and the config; no tensor is read.

    Raises:
        UnsupportedFeatureError: the checkpoint needs a built model (see :func:`offline_refusal`), or the
            index does not hold what is expected key for key and shape for shape (the model-built route then
            names the difference).
    """
    from bridge.parallel.spec import ParallelLayout, ParamSpec, PipelineLayout
    from bridge.streaming.plan import plan_export
    from bridge.streaming.shards import tp_meta

    why = offline_refusal(writer_class, provider)
    if why is not None:
        raise UnsupportedFeatureError(f"{dirs.root} cannot be exported without building the model: {why}; "
                                      "export_ckpt builds it unless offline=True (drop it, or use --build-model)")
    tensors = DistcpTensors(dirs.iteration_dir, index)
    stored = {k: list(tensors.size(k)) for k in tensors.keys() if not k.startswith(COMMON_PREFIX)}
    if record is not None:
        expected, against = {k: list(v["shape"]) for k, v in record.get("params", {}).items()}, dirs.record.name
        extra = sorted(set(stored) - set(expected))
    else:
        expected = {k: None if e.shape is None else list(e.shape) for k, e in expected_by_model(provider).items()}
        against, extra = "the model's sharded state dict (built on the meta device)", []
    differ = extra + sorted(k for k in expected if k not in stored or expected[k] not in (None, stored[k]))
    if differ:
        key = differ[0]
        raise UnsupportedFeatureError(f"{dirs.root}: the tensor index and {against} disagree (first: {key!r}: "
                                      f"stored {stored.get(key)}, expected {expected.get(key)}); the model-built "
                                      "route (offline=False, --build-model) reads what it can and names the rest")
    tensors.check_chunks(sorted(expected))
    registry, ctx = family.model_registry(provider, "gpt"), family.mapping_context(provider)
    sources = parameters_of(tensors, sorted(expected))
    unmapped = sorted(n for n in sources if registry.megatron_to_hf_lookup(n) is None)
    if unmapped:
        raise UnsupportedFeatureError(f"{dirs.root}: {len(unmapped)} stored parameter(s) have no mapping in the "
                                      f"{family.architecture} table, e.g. {unmapped[:3]}")
    params = {}
    for name, (key, layer) in sources.items():
        mapping = registry.megatron_to_hf_lookup(name)
        shape = tensors.size(key)[1:] if layer is not None else tensors.size(key)
        meta = tp_meta(mapping, ctx)
        if mapping.sharding == "vocab":  # the padding rows are cut before planning (export_offline)
            if shape[0] < provider.vocab_size:
                raise CheckpointError(f"{dirs.root}: {key!r} has {shape[0]} rows, fewer than the config's "
                                      f"vocab_size={provider.vocab_size}; use the config the checkpoint was written "
                                      "for")
            shape, meta = (provider.vocab_size, *shape[1:]), {**meta, "divisible_by": 1}
        params[name] = ParamSpec(mapping.sharding, meta, tensors.dtype(key), tuple(shape))
    layout = ParallelLayout(tp=1, pipeline=PipelineLayout(provider.num_layers, 1, None, None), params=params,
                            share_embeddings_and_output_weights=provider.share_embeddings_and_output_weights)
    wanted = config_dtype(hf_config)
    planned = [(name, mapping, [dataclasses.replace(t, dtype=export_dtype(record, t.name, t.dtype, wanted))
                                for t in outs]) for name, mapping, outs in plan_export(layout, registry, ctx)]
    return OfflineExport(tensors, planned, sources, layout, ctx)


def export_offline(plan: OfflineExport, hf_path: str | os.PathLike[str], *, config: dict[str, Any],
                   source_dir: Path | None, overwrite: bool = False, durable: bool = True,
                   max_shard_size: int | str | None = None, progress: bool | None = False) -> Path:
    """Write the planned HF checkpoint at ``hf_path`` (atomically), ``config`` as its ``config.json`` and the
    companion files of ``source_dir``."""
    from bridge.checkpoint.paths import CheckpointDir
    from bridge.checkpoint.writer import DEFAULT_MAX_SHARD_SIZE, parse_size
    from bridge.streaming.files import Progress
    from bridge.streaming.hf_out import planned_export
    from bridge.streaming.merges import hf_pieces
    from bridge.streaming.pieces import FileSpan, Scratch

    started = time.perf_counter()
    outs = [t for _, _, ts in plan.planned for t in ts]
    size = parse_size(max_shard_size if max_shard_size is not None else DEFAULT_MAX_SHARD_SIZE)
    companions = CheckpointDir.resolve(source_dir) if source_dir is not None else None
    scratch = Scratch(mapped=True)
    with planned_export(hf_path, outs, max_shard_size=size, companions=companions, config=config,
                        overwrite=overwrite, durable=durable) as export, \
            Progress(total_bytes=export.writer.total_size, total_tensors=len(outs), desc="export-ckpt",
                     enabled=progress) as bar:
        for name, mapping, hf_tensors in plan.planned:
            key, layer = plan.sources[name]
            part = plan.tensors.part(key, layer)
            spec = plan.layout.params[name]
            if spec.kind == "vocab":
                part = part.rows(0, spec.shape[0]) if isinstance(part, FileSpan) else part[:spec.shape[0]]
            dtypes = {t.name: t.dtype for t in hf_tensors}
            for hf_name, pieces in hf_pieces(mapping, plan.ctx, [part], spec, name=name, scratch=scratch).items():
                log.debug("%s <- %s%s (%d span(s))", hf_name, key, f"[{layer}]" if layer is not None else "",
                          pieces.spans)
                pieces = pieces.to(dtypes[hf_name])
                export.writer.write_pieces(hf_name, pieces)
                bar.advance(pieces.nbytes)
            del part
    path = export.path
    assert path is not None  # set when the block ends without an error
    log.info("exported %s offline: %d tensors, %.2f GB in %.2f s", path, len(outs), export.writer.total_size / 1e9,
             time.perf_counter() - started)
    return Path(path)
