"""HF <-> Megatron-LM ``torch_dist``: ``import_ckpt``, ``export_ckpt`` and ``load_megatron_model``.

The names follow Megatron-Bridge's (``AutoBridge.import_ckpt`` / ``export_ckpt``,
``bridge.load_megatron_model``); :class:`bridge.auto_bridge.AutoBridge` exposes them as thin methods.

The provider of a checkpoint comes from, in order:

* mcore-compat's record (``mcore_compat.json`` + ``hf/``): the HF config written next to the
  tensors, with the provider settings recorded at import (dtype, vocabulary padding, overrides);
* for a checkpoint Megatron-LM wrote (no record): the HF config or Hub ID the user names
  (``hf_config=``), checked against the ``args`` in ``common.pt``, which fix dtype and vocab padding.

``open_bridge`` is :meth:`AutoBridge.from_hf_pretrained` (passed in by ``AutoBridge``'s methods, so that
this package never imports ``bridge.auto_bridge``, which imports it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bridge._logging import get_logger
from bridge.checkpoint.atomic import check_not_an_input
from bridge.errors import CheckpointError, ConfigError, UnsupportedFeatureError
from bridge.megatron_ckpt.args import check_args_against, provider_settings_from_args
from bridge.megatron_ckpt.interop import sharded_for_checkpoint, writer_model_class
from bridge.megatron_ckpt.keys import stored_entries
from bridge.megatron_ckpt.layout import CheckpointDirs
from bridge.megatron_ckpt.offline_export import config_dtype, export_dtype, export_offline, plan_offline_export
from bridge.megatron_ckpt.reader import load_common, load_into, open_checkpoint, storage_index
from bridge.megatron_ckpt.writer import model_state_keys, save_megatron_model

__all__ = ["LoadedCheckpoint", "export_ckpt", "import_ckpt", "load_checkpoint_model", "provider_for_checkpoint"]

log = get_logger("megatron_ckpt.api")


def _restore(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"dtype"}:
        return getattr(torch, value["dtype"])
    if isinstance(value, list):
        return tuple(_restore(v) for v in value)
    return value


def _apply(provider: Any, settings: dict[str, Any], *, source: str) -> None:
    for name, value in settings.items():
        value = _restore(value)
        if isinstance(value, tuple) and isinstance(getattr(provider, name, None), list):
            value = list(value)  # JSON has no tuples: a list stays one (MCore reads a tuple moe_layer_freq as no list)
        try:
            setattr(provider, name, value)
        except ConfigError as exc:
            raise CheckpointError(f"{source}: the recorded provider setting {name!r} cannot be applied here: {exc}")


OpenBridge = Callable[..., Any]


def provider_for_checkpoint(dirs: CheckpointDirs, record: dict[str, Any] | None, *, open_bridge: OpenBridge,
                            hf_config: str | os.PathLike[str] | None = None,
                            trust_remote_code: bool | None = None) -> tuple[Any, Any]:
    """``(AutoBridge, provider)`` for a located checkpoint (see the module docstring); TP = PP = 1."""
    if hf_config is None and record is None:
        raise CheckpointError(
            f"{dirs.root} has no {dirs.record.name} (it was not written by mcore-compat, e.g. Megatron-LM's "
            "save_checkpoint): name the model's HF config directory or Hub ID (hf_config= / --hf-config)"
        )
    source = hf_config if hf_config is not None else dirs.hf_dir
    bridge = open_bridge(source, trust_remote_code=trust_remote_code)
    provider = bridge.to_megatron_provider(load_weights=False)
    if record is not None:
        architectures = list(getattr(bridge.hf_config, "architectures", None) or [])
        if hf_config is not None and record["architecture"] not in architectures:
            raise CheckpointError(
                f"{dirs.record} was written for {record['architecture']} but {hf_config} is {architectures}"
            )
        _apply(provider, record["provider"], source=str(dirs.record))
    else:
        common = load_common(dirs)
        if "args" not in common or common["args"] is None:
            raise CheckpointError(
                f"{dirs.iteration_dir / 'common.pt'} has no 'args' (keys {sorted(common)[:8]}); without them the "
                "writer's dtype and vocabulary padding are unknown. Re-save with Megatron-LM's save_checkpoint"
            )
        check_args_against(common["args"], provider, source=str(dirs.iteration_dir / "common.pt"))
        _apply(provider, provider_settings_from_args(common["args"], source=str(dirs.iteration_dir)),
               source=str(dirs.iteration_dir / "common.pt"))
    provider.tensor_model_parallel_size = 1
    provider.pipeline_model_parallel_size = 1
    provider.expert_model_parallel_size = 1
    provider.perform_initialization = False
    return bridge, provider


class LoadedCheckpoint:
    """What :func:`load_checkpoint_model` built: the bridge, the provider, this rank's chunks, the directories,
    and the checkpoint's record (None when Megatron-LM wrote it)."""

    def __init__(self, bridge: Any, provider: Any, model: list[torch.nn.Module], dirs: CheckpointDirs,
                 record: dict[str, Any] | None = None) -> None:
        self.bridge, self.provider, self.model, self.dirs, self.record = bridge, provider, model, dirs, record


def load_checkpoint_model(path: str | os.PathLike[str], *, tp: int = 1, pp: int = 1, ep: int = 1,
                          hf_config: str | os.PathLike[str] | None = None, provider: Any = None,
                          bridge: Any = None, open_bridge: OpenBridge | None = None,
                          trust_remote_code: bool | None = None, model_class: str | None = None) -> LoadedCheckpoint:
    """Build the model at ``tp`` x ``pp`` x ``ep`` and fill it from the checkpoint (every rank calls it):
    with ``provider`` (and its ``bridge``) as given, else from the checkpoint through ``open_bridge``, as
    ``model_class`` (None: the writer's). A GPTModel checkpoint reads into a HybridModel (see
    :mod:`bridge.megatron_ckpt.interop`); a HybridModel one only into a HybridModel."""
    dirs, record = open_checkpoint(path)
    if provider is None:
        if open_bridge is None:
            raise ConfigError("load_checkpoint_model needs provider= or open_bridge= (AutoBridge.from_hf_pretrained)")
        bridge, provider = provider_for_checkpoint(dirs, record, open_bridge=open_bridge, hf_config=hf_config,
                                                   trust_remote_code=trust_remote_code)
        provider.tensor_model_parallel_size = tp
        provider.pipeline_model_parallel_size = pp
        provider.expert_model_parallel_size = ep
    if model_class is not None:
        provider.model_class = model_class
    provider.finalize()
    chunks = provider.provide_distributed_model()
    source = writer_model_class(record, None if record is not None else load_common(dirs).get("args"))
    target = provider.resolved_model_class()
    if source == target:
        load_into(dirs, chunks)
    else:
        sharded = {key: chunk.sharded_state_dict() for key, chunk in zip(model_state_keys(len(chunks)), chunks)}
        load_into(dirs, chunks, sharded_for_checkpoint(chunks, sharded, stored=stored_entries(dirs.iteration_dir),
                                                       source=source, target=target, where=str(dirs.root)))
        log.info("read the %s-layout checkpoint %s into %s", source, dirs.root, type(chunks[0]).__name__)
    log.info("loaded %s at TP=%d, PP=%d", dirs.root, provider.tensor_model_parallel_size,
             provider.pipeline_model_parallel_size)
    return LoadedCheckpoint(bridge, provider, chunks, dirs, record)


#: ``import_ckpt`` overrides the offline writer honours (as ``dtype`` / ``should_pad_vocab``), with a check
#: of the value: any other override needs the built model.
_OFFLINE_OVERRIDES = {
    "tensor_model_parallel_size": lambda v: v == 1,  # torch_dist holds global tensors: any TP loads them
    "pipeline_model_parallel_size": lambda v: v == 1,
    "expert_model_parallel_size": lambda v: v == 1,
    "model_class": lambda v: v in (None, "auto", "gpt"),
    "params_dtype": lambda v: isinstance(v, torch.dtype),
    "should_pad_vocab": lambda v: isinstance(v, bool),
}


def _offline_import_refusal(overrides: dict[str, Any]) -> str | None:
    """Why ``import_ckpt`` must build the model for these overrides here (None: the offline writer can)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        return f"it runs on {dist.get_world_size()} ranks"
    odd = sorted(k for k, v in overrides.items() if k not in _OFFLINE_OVERRIDES or not _OFFLINE_OVERRIDES[k](v))
    if odd:
        return f"the provider overrides {odd} change what a built model holds"
    from bridge.hybrid_model import resolve_model_class

    if resolve_model_class(overrides.get("model_class") or "auto") != "gpt":
        return "the installed megatron-core builds HybridModel (the offline writer writes GPTModel names)"
    return None


def import_ckpt(hf_path: str | os.PathLike[str], megatron_path: str | os.PathLike[str], *, open_bridge: OpenBridge,
                overwrite: bool = False, durable: bool = True, trust_remote_code: bool | None = None,
                progress: bool | None = False, offline: bool | None = None, **provider_overrides: Any) -> Path:
    """HF checkpoint -> ``torch_dist`` checkpoint at ``megatron_path`` (with ``hf/`` and ``mcore_compat.json``).

    ``provider_overrides`` are set on the provider first (``tensor_model_parallel_size=2``,
    ``params_dtype=torch.bfloat16``, ``should_pad_vocab=True``...). Every rank calls it. ``progress``
    shows the three phases (config, model built and filled, checkpoint written) on global rank 0.

    ``offline`` (None: where possible) writes the checkpoint straight from the safetensors files without
    building the model (:func:`bridge.megatron_ckpt.offline.convert_to_torch_dist`: one process, dense
    GPTModel families, overrides limited to TP = PP = EP = 1, ``params_dtype`` and ``should_pad_vocab``); it
    loads to the same tensors as the model-built one (a test checks every dense family). ``False`` always
    builds the model and saves it with MCore's ``dist_checkpointing``; ``True`` refuses what needs a model.
    """
    import torch.distributed as dist
    from tqdm import tqdm

    started = time.perf_counter()
    if offline is not False:
        why = _offline_import_refusal(provider_overrides)
        if why is not None and offline:
            raise UnsupportedFeatureError(f"import_ckpt(offline=True): {why}; drop offline=True to build the model")
        if why is None:
            from bridge.megatron_ckpt.offline import convert_to_torch_dist

            try:
                done = convert_to_torch_dist(
                    hf_path, megatron_path, open_bridge=open_bridge, overwrite=overwrite, progress=progress,
                    dtype=provider_overrides.get("params_dtype", "keep"), model_dtypes=True,  # as the model holds them
                    trust_remote_code=trust_remote_code, durable=durable,
                    should_pad_vocab=provider_overrides.get("should_pad_vocab", False),
                    model_class=provider_overrides.get("model_class"))
            except UnsupportedFeatureError as exc:  # refused before anything was written
                if offline:
                    raise
                log.info("%s; building the model instead", exc)
            else:
                log.info("imported %s -> %s without a model in %.2f s", hf_path, done.path,
                         time.perf_counter() - started)
                return done.path
        else:
            log.info("import_ckpt builds the model: %s", why)
    quiet = dist.is_initialized() and dist.get_rank() != 0
    with tqdm(total=3, desc="import-ckpt: config", unit="phase", leave=False,
              disable=True if quiet or progress is False else None) as bar:
        bridge = open_bridge(hf_path, trust_remote_code=trust_remote_code)
        inputs = [p for p in (hf_path, bridge.hf_path) if p is not None and Path(p).expanduser().exists()]
        check_not_an_input(megatron_path, inputs, action="import")
        provider = bridge.to_megatron_provider(load_weights=True)
        for name, value in provider_overrides.items():
            setattr(provider, name, value)
        bar.update(1)
        bar.set_description("import-ckpt: build + load HF weights")
        chunks = provider.provide_distributed_model()
        bar.update(1)
        bar.set_description("import-ckpt: write torch_dist")
        architectures = list(getattr(bridge.hf_config, "architectures", None) or []) or [bridge.bridge.architecture]
        hf_model = None
        if getattr(bridge, "source", None) is not None:
            from bridge.saved_checkpoint import source_record

            hf_model = source_record(bridge.source)
        out = save_megatron_model(chunks, megatron_path, provider=provider, architecture=architectures[0],
                                  hf_source=bridge.hf_path, hf_model=hf_model, overwrite=overwrite, durable=durable)
        bar.update(1)
    log.info("imported %s -> %s in %.2f s", hf_path, out, time.perf_counter() - started)
    return out


def _companion_source(bridge: Any, hf_config: str | os.PathLike[str] | None, dirs: CheckpointDirs) -> Path | None:
    """Where the exported checkpoint's config, tokenizer and code files come from: the ``hf_config`` the user
    named (a directory, or a Hub ID's companion files, never its weights), else the checkpoint's ``hf/``."""
    if hf_config is None:
        source: Path | None = dirs.hf_dir
    else:
        from bridge import hub

        source = Path(bridge.fetch(hub.COMPANIONS)) if hasattr(bridge, "fetch") else Path(hf_config)
    return source if source is not None and source.is_dir() else None


def export_ckpt(megatron_path: str | os.PathLike[str], hf_path: str | os.PathLike[str], *, open_bridge: OpenBridge,
                hf_config: str | os.PathLike[str] | None = None, overwrite: bool = False, durable: bool = True,
                max_shard_size: int | str | None = None, trust_remote_code: bool | None = None,
                progress: bool | None = False, model_class: str | None = None, offline: bool | None = None) -> Path:
    """``torch_dist`` checkpoint -> HF checkpoint (single process, TP = PP = 1, resharding on load).

    ``offline`` (None: where possible) copies the tensors straight from the checkpoint's records without
    building the model (:mod:`bridge.megatron_ckpt.offline_export`: GPTModel names, no mixture of experts, no
    ``model_class`` asked for; what the index must hold comes from mcore-compat's record, or for a checkpoint
    Megatron-LM wrote from the model built on the meta device); ``False`` always builds the model and loads it
    with ``dist_checkpointing``; ``True`` refuses what needs a model. Both write the same tensors, dtypes,
    ``config.json`` and companion files (with several shards, which file holds which tensor may differ). The
    output target is checked before anything is loaded, so a refused ``hf_path`` costs nothing.
    """
    from tqdm import tqdm

    from bridge.checkpoint.atomic import AtomicDirectory
    from bridge.checkpoint.writer import HFCheckpointWriter

    AtomicDirectory(hf_path, overwrite=overwrite, durable=False).abort()  # the guard, before any work
    started = time.perf_counter()
    dirs, record = open_checkpoint(megatron_path)
    check_not_an_input(hf_path, [dirs.root, hf_config if hf_config is not None and Path(hf_config).expanduser().is_dir()
                                 else None], action="export")
    bridge, provider = provider_for_checkpoint(dirs, record, open_bridge=open_bridge, hf_config=hf_config,
                                               trust_remote_code=trust_remote_code)
    if offline and model_class is not None:
        raise ConfigError(f"export_ckpt: model_class={model_class!r} asks for a built model, offline=True for none; "
                          "drop one of them")
    if offline is not False and model_class is None:
        try:
            writer = writer_model_class(record, None if record is not None else load_common(dirs).get("args"))
            plan = plan_offline_export(dirs, record, bridge.bridge, provider, bridge.hf_config, storage_index(dirs),
                                       writer_class=writer)
        except UnsupportedFeatureError as exc:
            if offline:
                raise
            log.info("%s; building the model instead", exc)
        else:
            out = export_offline(plan, hf_path, config=bridge.bridge.export_config(bridge.hf_config),
                                 source_dir=_companion_source(bridge, hf_config, dirs), overwrite=overwrite,
                                 durable=durable, max_shard_size=max_shard_size, progress=progress)
            log.info("exported %s -> %s without a model in %.2f s", megatron_path, out, time.perf_counter() - started)
            return out
    loaded = load_checkpoint_model(megatron_path, provider=provider, bridge=bridge, model_class=model_class)
    kwargs: dict[str, Any] = {"overwrite": overwrite, "durable": durable,
                              "source_dir": _companion_source(bridge, hf_config, dirs)}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    wanted = config_dtype(bridge.hf_config)
    with HFCheckpointWriter(hf_path, config=bridge.bridge.export_config(bridge.hf_config), **kwargs) as writer, \
            tqdm(desc="export-ckpt", unit="tensor", disable=None if progress is None
                 else not progress, leave=False) as bar:
        for name, tensor in bridge.export_hf_weights(loaded.model, on_host=False):
            dtype = export_dtype(loaded.record, name, tensor.dtype, wanted)
            writer.add(name, tensor if dtype == tensor.dtype else tensor.to(dtype), copy=False)
            bar.update(1)
            del tensor
    log.info("exported %s -> %s in %.2f s", megatron_path, hf_path, time.perf_counter() - started)
    return Path(hf_path)
