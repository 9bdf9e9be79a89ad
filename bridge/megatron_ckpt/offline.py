"""``convert --format torch_dist``: HF safetensors -> Megatron-LM ``torch_dist`` checkpoint with no model built.

The streaming planner of the saved layout (:func:`bridge.streaming.plan.plan_import`) decides every
Megatron parameter from headers and config alone; each one is then assembled from its file spans
(:func:`bridge.streaming.shards.all_shard_pieces`), written and dropped, so peak memory stays about
one parameter group whatever the model's size.

The files are those ``dist_checkpointing.save`` writes for the same model at TP = PP = 1 (the proof is
a test: both load to identical tensors), written by hand in PyTorch DCP's format:

* MCore's sharded keys: a decoder layer's parameter is one global tensor ``[num_layers, ...]`` under
  its layer-less name, the layer norms under the names MCore's local layer spec maps them to
  (:data:`LAYER_KEY_RENAMES`); each layer is one DCP chunk (``torch.save`` of the tensor, as DCP stores
  tensors) at offset ``(layer, 0, ...)``; a tensor kept in its HF dtype is never read into memory: its record
  is ``torch.save``'s metadata (``skip_data``) with the bytes copied in from the HF files by the kernel;
* every decoder-layer linear's ``_extra_state`` (``None`` without Transformer Engine) as a DCP byte item
  ``<key>/shard_<layer>_<num_layers>``;
* ``.metadata`` (DCP's pickled index), ``metadata.json``, ``common.pt`` with Megatron-LM's ``args``,
  and the tracker, record and ``hf/`` files of :mod:`bridge.megatron_ckpt.layout`.

Mixture-of-experts families are refused (their experts are stacked along another axis): use
``import-ckpt``, which builds the model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bridge import compat, hub
from bridge._logging import get_logger
from bridge.checkpoint.atomic import AtomicDirectory, check_not_an_input
from bridge.checkpoint.companions import copy_companions
from bridge.checkpoint.paths import CheckpointDir
from bridge.errors import CheckpointError, ConfigError, UnsupportedFeatureError
from bridge.megatron_ckpt.args import megatron_args
from bridge.megatron_ckpt.layout import HF_DIR, RECORD_FILE, RECORD_FORMAT, RECORD_VERSION, TRACKER_FILE
from bridge.megatron_ckpt.records import record_data_offset
from bridge.megatron_ckpt.writer import CHECKPOINT_VERSION, hf_source_dtypes, provider_record

__all__ = ["LAYER_KEY_RENAMES", "OfflineResult", "convert_to_torch_dist", "sharded_key"]

log = get_logger("megatron_ckpt.offline")

#: Layer-local parameter names MCore's local layer spec saves under another key (its
#: ``sharded_state_dict_keys_map``: the key Transformer Engine's fused norm+linear layers use).
LAYER_KEY_RENAMES = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "input_layernorm.bias": "self_attention.linear_qkv.layer_norm_bias",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
    "pre_mlp_layernorm.bias": "mlp.linear_fc1.layer_norm_bias",
}
_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
_DATA_FILE = "__0_0.distcp"
_BACKEND = {"sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch",
            "common_backend_version": 1}


def sharded_key(name: str) -> tuple[str, int | None]:
    """``(MCore sharded key, layer or None)`` of a global Megatron parameter name.

    >>> sharded_key("decoder.layers.3.input_layernorm.weight")
    ('decoder.layers.self_attention.linear_qkv.layer_norm_weight', 3)
    >>> sharded_key("output_layer.weight")
    ('output_layer.weight', None)
    """
    match = _LAYER.match(name)
    if match is None:
        return name, None
    rest = match.group(2)
    return f"decoder.layers.{LAYER_KEY_RENAMES.get(rest, rest)}", int(match.group(1))


@dataclass
class _Index:
    """DCP's index, filled item by item."""

    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {size, dtype, chunks}
    storage: dict[Any, Any] = field(default_factory=dict)
    objects: list[str] = field(default_factory=list)

    def metadata(self) -> Any:
        from torch.distributed.checkpoint.metadata import (
            BytesStorageMetadata,
            ChunkStorageMetadata,
            Metadata,
            TensorProperties,
            TensorStorageMetadata,
        )

        state: dict[str, Any] = {}
        for key, info in self.tensors.items():
            chunks = [ChunkStorageMetadata(offsets=torch.Size(o), sizes=torch.Size(s)) for o, s in info["chunks"]]
            state[key] = TensorStorageMetadata(TensorProperties(dtype=info["dtype"]), torch.Size(info["size"]), chunks)
        for key in self.objects:
            state[key] = BytesStorageMetadata()
        return Metadata(state_dict_metadata=state, storage_data=self.storage)


@contextlib.contextmanager
def _without_zip_crc32() -> Iterator[None]:
    """``torch.save`` without the CRC32 of each zip record (half the time of a tensor record here, measured):
    PyTorch's reader never checks it (miniz is built with ``MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS``), so every
    ``torch.load`` and DCP reader loads the records; only a generic unzip tool would warn. Restored after."""
    from torch import serialization

    if not compat.has_feature("torch_save_crc32_option"):  # torch < 2.6 always computes it
        yield
        return
    before = serialization.get_crc32_options()
    serialization.set_crc32_options(False)
    try:
        yield
    finally:
        serialization.set_crc32_options(before)


def _append_pieces(handle: Any, index: _Index, key: str, offsets: tuple[int, ...], shape: tuple[int, ...],
                   pieces: Any) -> None:
    """``torch.save`` of a ``shape`` tensor holding ``pieces``' bytes, without the tensor: the record is written
    with ``skip_data`` (its data left as a hole) and the pieces are copied into the hole from the HF files
    (``copy_file_range``: no read into memory, no second copy through ``torch.save``)."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import MetadataIndex

    start = handle.tell()
    with torch.serialization.skip_data():
        torch.save(torch.empty(shape, dtype=pieces.dtype), handle)  # never touched: only its metadata is saved
    end = handle.tell()
    handle.flush()
    data_at = record_data_offset(handle.fileno(), start, end - start, nbytes=pieces.nbytes, where=str(handle.name))
    handle.seek(end)
    pieces.write_at(handle.fileno(), data_at)
    index.storage[MetadataIndex(key, torch.Size(offsets) if offsets else None)] = _StorageInfo(
        _DATA_FILE, start, end - start)


def _append(handle: Any, index: _Index, key: str, offsets: tuple[int, ...], payload: Any) -> None:
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import MetadataIndex

    start = handle.tell()
    torch.save(payload, handle)
    storage = _StorageInfo(_DATA_FILE, start, handle.tell() - start)
    index.storage[MetadataIndex(key, torch.Size(offsets) if offsets else None)] = storage


@dataclass(frozen=True)
class OfflineResult:
    """What :func:`convert_to_torch_dist` wrote."""

    path: Path
    tensors: int
    bytes: int
    seconds: float


def _model_dtypes(provider: Any, plans: list[Any], layout: Any, where: Any) -> dict[str, torch.dtype]:
    """Megatron parameter name -> the dtype the model holds it in, after checking that the model built on the meta
    device saves exactly the planned keys with the planned shapes (vocabulary rows: padded)."""
    from bridge.megatron_ckpt.keys import expected_by_model

    expected = expected_by_model(provider)
    planned: dict[str, tuple[int, ...]] = {}
    for plan in plans:
        key, layer = sharded_key(plan.name)
        shape = tuple(layout.params[plan.name].shape)
        if layout.params[plan.name].kind == "vocab":
            shape = (provider.padded_vocab_size, *shape[1:])
        planned[key] = (provider.num_layers, *shape) if layer is not None else shape
    differ = sorted(set(planned) ^ set(expected)) or sorted(
        k for k in planned if expected[k].shape is not None and expected[k].shape != planned[k])
    if differ:
        key = differ[0]
        raise UnsupportedFeatureError(
            f"{where}: the model built on the meta device does not save what the offline writer plans (first: {key!r}: "
            f"planned {planned.get(key)}, the model {expected[key].shape if key in expected else None}); build the "
            "model instead (import_ckpt(..., offline=False), --build-model)")
    return {plan.name: expected[sharded_key(plan.name)[0]].dtype for plan in plans}


def _write_tensors(iteration_dir: Path, plans: list[Any], layout: Any, ctx: Any, source: Any, num_layers: int,
                   padded_vocab: int, bar: Any, dtypes: dict[str, torch.dtype]) -> tuple[_Index, int]:
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import MetadataIndex

    from bridge.parallel.vocab import pad_vocab
    from bridge.streaming.pieces import Scratch
    from bridge.streaming.shards import all_shard_pieces

    index, written, scratch = _Index(), 0, Scratch(mapped=True)
    copy_spans = compat.has_feature("torch_save_skip_data")
    linears: set[tuple[str, int]] = set()
    # read and write: the zip headers of each record are read back to find where its data goes
    with open(iteration_dir / _DATA_FILE, "w+b") as handle, _without_zip_crc32():
        for plan in plans:
            spec = layout.params[plan.name]
            want = dtypes.get(plan.name, spec.dtype)
            (pieces,) = all_shard_pieces(plan.mapping, ctx, source, tp=1, scratch=scratch)
            copied = copy_spans and pieces.dtype == want and not (
                spec.kind == "vocab" and pieces.shape[0] != padded_vocab)
            if copied:  # the bytes as they are: copied from the HF files into the record
                tensor = torch.empty(pieces.shape, dtype=pieces.dtype, device="meta")
            else:
                tensor = pieces.to(want).tensor()
                del pieces
                if spec.kind == "vocab" and tensor.shape[0] != padded_vocab:
                    tensor = pad_vocab(tensor, padded_vocab, name=plan.name)
            key, layer = sharded_key(plan.name)
            entry = index.tensors.setdefault(key, {"dtype": tensor.dtype, "chunks": []})
            if layer is None:
                entry["size"], offsets = tuple(tensor.shape), (0,) * tensor.dim()
                if copied:
                    _append_pieces(handle, index, key, offsets, tuple(tensor.shape), pieces)
                else:
                    _append(handle, index, key, offsets, tensor)
            else:
                entry["size"] = (num_layers, *tensor.shape)
                offsets = (layer,) + (0,) * tensor.dim()
                if copied:
                    _append_pieces(handle, index, key, offsets, (1, *tensor.shape), pieces)
                else:
                    _append(handle, index, key, offsets, tensor.unsqueeze(0))
                module = key.rsplit(".", 1)[0]
                if module.rsplit(".", 1)[-1].startswith("linear_") and not key.endswith(("layer_norm_weight",
                                                                                          "layer_norm_bias")):
                    linears.add((module, layer))
            entry["chunks"].append((offsets, (1, *tensor.shape) if layer is not None else tuple(tensor.shape)))
            written += tensor.numel() * tensor.element_size()
            bar.advance(tensor.numel() * tensor.element_size())
            del tensor
        for module, layer in sorted(linears):  # MCore saves each linear's (empty) extra state per layer
            key = f"{module}._extra_state/shard_{layer}_{num_layers}"
            buffer = io.BytesIO()
            torch.save([None], buffer)  # as MCore stores a ShardedObject: a one-item list
            start = handle.tell()
            handle.write(buffer.getvalue())
            index.storage[MetadataIndex(key)] = _StorageInfo(_DATA_FILE, start, handle.tell() - start)
            index.objects.append(key)
    return index, written


def convert_to_torch_dist(hf_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                          open_bridge: Callable[..., Any], dtype: str | torch.dtype | None = "keep",
                          overwrite: bool = False, trust_remote_code: bool | None = None,
                          progress: bool | None = None, durable: bool = True, should_pad_vocab: bool = False,
                          revision: str | None = None, model_dtypes: bool = False,
                          model_class: str | None = None) -> OfflineResult:
    """Write the HF checkpoint in ``hf_dir`` as a ``torch_dist`` checkpoint at ``out_dir`` (TP = PP = 1;
    ``dist_checkpointing`` reshards on load), streaming one parameter at a time, no model built.

    ``dtype``: ``"keep"`` stores each tensor in its file's dtype; a dtype casts every tensor to it. With
    ``model_dtypes`` (``import_ckpt``'s offline route) each tensor is stored in the dtype the model would hold it in
    (``dtype``, else the config's; MCore keeps some, e.g. norms, in float32), read from the model built on the
    meta device, whose keys and shapes must also be exactly the ones planned (else ``UnsupportedFeatureError``:
    build the model). ``model_class`` (``"auto"``/``"gpt"``) is recorded as asked; the keys are GPTModel's.

    ``open_bridge`` is :meth:`AutoBridge.from_hf_pretrained` (passed in: ``AutoBridge.import_ckpt`` routes here,
    so this module must not import ``bridge.auto_bridge``); the trust policy for custom code applies through it.
    """
    from bridge.streaming.family import family_of, parse_dtype
    from bridge.streaming.files import Progress, SliceReader
    from bridge.streaming.plan import import_layout, order_key, plan_import

    started = time.perf_counter()
    if model_class not in (None, "auto", "gpt"):
        raise ConfigError(f"model_class={model_class!r}: the offline writer writes GPTModel's keys (auto or gpt); "
                          "for HybridModel's use import_ckpt(..., model_class='hybrid'), which builds the model")
    auto = open_bridge(hf_dir, trust_remote_code=trust_remote_code, revision=revision, config_cache=True)
    hf_dir = auto.fetch(hub.ALL)
    check_not_an_input(out_dir, [hf_dir], action="convert")
    family, provider, registry, ctx = family_of(auto)
    if provider.num_moe_experts:
        raise UnsupportedFeatureError(
            f"{hf_dir}: offline torch_dist conversion does not cover mixture-of-experts models yet (MCore stacks "
            "experts along another axis); use `mcore-compat import-ckpt`, which builds the model"
        )
    provider.should_pad_vocab = should_pad_vocab
    requested = model_class or provider.model_class  # recorded as asked (as import_ckpt does): a reader resolves it
    provider.model_class = "gpt"  # the keys written below are GPTModel's (and no MCore import decides it)
    ctx = family.mapping_context(provider)
    target = parse_dtype(dtype)
    if target is not None:
        provider.params_dtype = target
    source = SliceReader(hf_dir)
    plans = plan_import(source, registry, ctx, names=source.keys(), ignored_hf_patterns=family.ignored_hf_patterns)
    layout = import_layout(plans, ctx, tp=1, pp=1, num_layers=provider.num_layers,
                           share_embeddings_and_output_weights=provider.share_embeddings_and_output_weights,
                           dtype=target)
    plans = sorted(plans, key=lambda p: order_key(p.name))
    dtypes = _model_dtypes(provider, plans, layout, hf_dir) if model_dtypes else {}
    total = sum(torch.Size(layout.params[p.name].shape).numel()
                * dtypes.get(p.name, layout.params[p.name].dtype).itemsize for p in plans)
    architectures = list(getattr(auto.hf_config, "architectures", None) or [])
    with AtomicDirectory(out_dir, overwrite=overwrite, durable=durable) as staging:
        iteration_dir = staging / "iter_0000000"
        iteration_dir.mkdir()
        with Progress(total_bytes=total, total_tensors=len(plans), desc="convert torch_dist", enabled=progress) as bar:
            index, written = _write_tensors(iteration_dir, plans, layout, ctx, source, provider.num_layers,
                                            provider.padded_vocab_size, bar, dtypes)
        with open(iteration_dir / ".metadata", "wb") as handle:
            pickle.dump(index.metadata(), handle)
        (iteration_dir / "metadata.json").write_text(json.dumps(_BACKEND), encoding="utf-8")
        torch.save({"args": megatron_args(provider), "checkpoint_version": CHECKPOINT_VERSION, "iteration": 0,
                    "num_floating_point_operations_so_far": 0}, iteration_dir / "common.pt")
        (staging / TRACKER_FILE).write_text("0", encoding="utf-8")
        record = {
            "format": RECORD_FORMAT, "version": RECORD_VERSION, "mcore_version": _installed_version(),
            "model_class": "gpt", "architecture": architectures[0] if architectures else family.architecture,
            "iteration": 0, "parallel": {"tp": 1, "pp": 1, "ep": 1, "world_size": 1},
            "vocab_padding": provider.vocab_padding.to_json(),
            "provider": {**provider_record(provider), "model_class": requested},
            "params": {k: {"shape": list(v["size"]), "dtype": str(v["dtype"]).removeprefix("torch.")}
                       for k, v in sorted(index.tensors.items())},
            "writer": "offline",
            "hf_dtypes": hf_source_dtypes(source),
        }
        if auto.source is not None:
            from bridge.saved_checkpoint import source_record

            record["hf_source"] = source_record(auto.source)
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        (staging / HF_DIR).mkdir()
        copy_companions(CheckpointDir.resolve(hf_dir), staging / HF_DIR, durable=False)
    seconds = time.perf_counter() - started
    log.info("wrote torch_dist checkpoint %s offline: %d tensors, %.2f GB in %.2f s", out_dir, len(plans),
             written / 1e9, seconds)
    return OfflineResult(path=Path(out_dir), tensors=len(plans), bytes=written, seconds=seconds)


def _installed_version() -> str:
    """The megatron-core version whose format the files follow (the installed one, read without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("megatron-core")
    except PackageNotFoundError:
        raise CheckpointError("megatron-core is not installed; the torch_dist format version is unknown") from None
