"""``AutoBridge``: the user-facing entry point (load, convert, export, inspect).

>>> bridge = AutoBridge.from_hf_pretrained("/path/to/llama")       # doctest: +SKIP
>>> provider = bridge.to_megatron_provider()                        # doctest: +SKIP
>>> provider.tensor_model_parallel_size = 1; provider.finalize()    # doctest: +SKIP
>>> model = provider.provide_distributed_model(wrap_with_ddp=False) # doctest: +SKIP
>>> bridge.save_hf_pretrained(model, "/tmp/out")                    # doctest: +SKIP

``path`` may be a Hub ID (``"Qwen/Qwen3-0.6B"``, with ``revision=``): it is resolved through the Hugging
Face cache by :mod:`bridge.hub` (config first; weights only when a model is filled or exported).
The names and signatures follow Megatron-Bridge's ``AutoBridge``; where ours differ (stricter checks,
``on_host=`` next to ``cpu=``), docs/migrating-from-megatron-bridge.md says how and why.

Nothing from a checkpoint runs before the trust policy allows it: the architecture is
read from ``config.json`` as JSON, and custom code (``auto_map``) is imported only with
``trust_remote_code=True`` or for a Hub ID of an org in :data:`bridge.trust.SAFE_REPOS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import torch
import torch.distributed as dist

from bridge import config_cache as configs
from bridge import conversion, hub, trust
from bridge._logging import get_logger
from bridge.checkpoint.companions import auto_map_modules
from bridge.errors import CheckpointError, ConfigError, UnsupportedFeatureError, UnsupportedModelError
from bridge.models.hf_validation import read_config_json, validate_hf_config
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge, bridge_for_architectures, registered_architectures

__all__ = ["AutoBridge", "HFWeightTuple"]

log = get_logger("auto_bridge")


def _chunks(model: Any) -> list[torch.nn.Module]:
    return list(model) if isinstance(model, (list, tuple)) else [model]


class HFWeightTuple(NamedTuple):
    """One exported HF tensor, as Megatron-Bridge yields it (unpacks as ``name, tensor``)."""

    param_name: str
    weight: torch.Tensor


def _named(stream: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None) -> Iterator[HFWeightTuple]:
    for name, tensor in stream:
        yield HFWeightTuple(name, tensor if dtype is None else tensor.to(dtype))
        del tensor  # the stream gathers the next parameter on resuming: drop this one first


class AutoBridge:
    """HF checkpoint (or config) + the family bridge that handles it."""

    def __init__(self, hf_config: Any, *, hf_path: Path | None, bridge: MegatronModelBridge,
                 trust_remote_code: bool | None = None, source: hub.HFSource | None = None) -> None:
        self.hf_config = hf_config
        self.hf_path = hf_path
        self.bridge = bridge
        self.trust_remote_code = trust_remote_code
        self.source = source
        #: What the checkpoint was loaded from (a Hub ID or a path, as given), and the revision asked for.
        self.hf_model_id: str | None = source.spec if source is not None else None
        self.hf_model_revision: str | None = source.revision if source is not None else None
        #: The saved Megatron checkpoint a :meth:`from_auto_config` bridge describes.
        self.megatron_path: Path | None = None
        self._token: str | bool | None = None
        self._use_code = False  # whether from_hf_pretrained let the checkpoint's custom config code run
        self._provider: GPTModelProvider | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_hf_pretrained(cls, path: str | Path, trust_remote_code: bool | None = None, *,
                           revision: str | None = None, local_files_only: bool | None = None,
                           cache_dir: str | Path | None = None, token: str | bool | None = None,
                           config_cache: bool = False, **kwargs: Any) -> "AutoBridge":
        """A bridge for an HF checkpoint: a local directory or a Hub ID ``org/name`` (at ``revision``).

        Only ``config.json`` is read now (plus, when the trust policy allows it, the custom code its
        ``auto_map`` names); weights are fetched when a model is filled or exported. ``local_files_only``,
        ``cache_dir`` and ``token`` go to :func:`bridge.hub.resolve_hf_source`; ``kwargs`` to
        ``AutoConfig.from_pretrained``. With ``config_cache`` (the offline conversions, which read the config
        only) and no ``kwargs``, ``hf_config`` may be a :class:`~bridge.resolved_config.ResolvedConfig` from
        :mod:`bridge.config_cache` (same values, no transformers import) instead of a transformers config.
        """
        src = hub.resolve_hf_source(path, revision=revision, files=hub.CONFIG, local_files_only=local_files_only,
                                    cache_dir=cache_dir, token=token)
        raw = read_config_json(src.path)
        bridge_cls = bridge_for_architectures(raw.get("architectures"), source=str(src.path / "config.json"))
        use_cache = config_cache and not kwargs
        entry = configs.lookup(src.path) if use_cache else None
        use_code = False
        if trust.needs_remote_code(raw) and not (entry.native_model_type if entry is not None
                                                 else configs.native_model_type(raw.get("model_type"))):
            subject = src.trust_subject if src.is_hub else path  # a local path keeps its spelling for the policy
            trust.require_trust(subject, trust_remote_code, what=f"config and model classes {raw.get('auto_map')}",
                                config=raw)
            use_code = True
            if src.is_hub:  # the trusted code files, from the commit the config came from
                modules = tuple(sorted(f"{m}.py" for m in auto_map_modules(raw)))
                hub.resolve_hf_source(src.spec, revision=src.pinned, files=modules,
                                      local_files_only=src.offline, cache_dir=src.cache_dir, token=token)
        if entry is not None:
            hf_config = entry.config
        else:
            hf_config = configs.transformers_config(src.path, use_code, kwargs)
            if use_cache:
                configs.store(src.path, hf_config, native_model_type=configs.native_model_type(raw.get("model_type")))
        log.debug("loaded %s config from %s with %s", bridge_cls.architecture, src.describe(), bridge_cls.__name__)
        auto = cls(hf_config, hf_path=src.path, bridge=bridge_cls(), trust_remote_code=trust_remote_code, source=src)
        auto._token = token
        auto._use_code = use_code
        return auto

    def load_real_config(self) -> Any:
        """This checkpoint's transformers config, loaded again (what a cached config stands in for)."""
        if self.hf_path is None:
            raise ConfigError("this bridge was made from a config object; it has no config.json to load")
        return configs.transformers_config(self.hf_path, self._use_code, {})

    @classmethod
    def from_hf_config(cls, config: Any) -> "AutoBridge":
        """A bridge for an HF config object (no weights); the config is validated first (sizes, divisibility)."""
        validate_hf_config(config)
        bridge_cls = bridge_for_architectures(getattr(config, "architectures", None), source=type(config).__name__)
        return cls(config, hf_path=None, bridge=bridge_cls())

    @classmethod
    def from_auto_config(cls, megatron_path: str | Path, hf_model_id: str | Path,
                         trust_remote_code: bool | None = None) -> "AutoBridge":
        """A config-only bridge for a saved Megatron checkpoint and the HF config (path or Hub ID) it belongs to.

        ``megatron_path`` is a saved layout (``layout.json``, as ``mcore-compat convert`` writes). Unlike
        Megatron-Bridge, no HF config is synthesised from a Megatron run config: the layout must be the
        model ``hf_model_id`` describes (layers, hidden size, vocabulary, tied embeddings, every parameter
        mapped), else :class:`~bridge.errors.WeightMismatchError` / ``ConfigError`` names what differs.
        """
        from bridge.saved_checkpoint import check_layout_matches, read_saved_layout

        layout = read_saved_layout(megatron_path)
        loaded = cls.from_hf_pretrained(hf_model_id, trust_remote_code=trust_remote_code)
        family = loaded.bridge
        provider = family.provider_bridge(loaded.hf_config)
        check_layout_matches(layout, provider, family, where=f"{megatron_path} and {hf_model_id}")
        auto = cls(loaded.hf_config, hf_path=None, bridge=family, trust_remote_code=trust_remote_code,
                   source=loaded.source)
        auto.megatron_path = Path(megatron_path)
        return auto

    @staticmethod
    def get_hf_model_id_from_checkpoint(path: str | Path) -> str | None:
        """The HF model (Hub ID or path) a saved Megatron checkpoint (a saved layout, or a ``torch_dist``
        checkpoint from import-ckpt / convert --format torch_dist) was converted from, or ``None``."""
        from bridge.megatron_ckpt.layout import recorded_hf_model_id
        from bridge.saved_checkpoint import hf_model_id_from_checkpoint

        return hf_model_id_from_checkpoint(path) or recorded_hf_model_id(path)

    @classmethod
    def list_supported_models(cls) -> list[str]:
        """Every registered architecture name, sorted."""
        return registered_architectures()

    @classmethod
    def supports(cls, config: Any) -> bool:
        """Whether a registered bridge handles ``config.architectures`` (an HF config or a ``config.json`` dict).

        Stricter than Megatron-Bridge, which only checks the class-name suffix (``...ForCausalLM``).
        """
        archs = config.get("architectures") if isinstance(config, dict) else getattr(config, "architectures", None)
        try:
            bridge_for_architectures(archs)
        except UnsupportedModelError:
            return False
        return True

    @classmethod
    def can_handle(cls, path: str | Path, trust_remote_code: bool | None = None) -> bool:
        """Whether a registered bridge handles the checkpoint's architecture (reads JSON only, runs no code)."""
        try:
            raw = read_config_json(hub.resolve_hf_source(path, files=hub.CONFIG).path)
        except (CheckpointError, ConfigError, OSError):
            return False
        return cls.supports(raw)

    def fetch(self, files: Sequence[str] = hub.ALL) -> Path:
        """The local directory of this bridge's checkpoint with ``files`` present (fetched, for a Hub ID,
        from the commit the config came from)."""
        if self.source is None or not self.source.is_hub:
            if self.hf_path is None:
                raise ConfigError("this bridge has no checkpoint (from_hf_config / from_auto_config): pass hf_path=")
            return self.hf_path
        src = self.source
        return hub.resolve_hf_source(src.spec, revision=src.pinned, files=files, local_files_only=src.offline,
                                     cache_dir=src.cache_dir, token=self._token).path

    def _weights_dir(self, hf_path: str | Path | None) -> Path:
        if hf_path is not None:
            return hub.resolve_hf_source(hf_path, files=hub.WEIGHTS).path
        if self.hf_path is None:
            raise ConfigError("no checkpoint to load: pass hf_path= or use AutoBridge.from_hf_pretrained")
        return self.fetch(hub.WEIGHTS)

    # -- providers and models ----------------------------------------------------------------
    def to_megatron_provider(self, load_weights: bool = True, hf_path: str | Path | None = None) -> GPTModelProvider:
        """A provider for this model; with ``load_weights`` the built chunks are filled from the checkpoint."""
        provider = self.bridge.provider_bridge(self.hf_config)
        self._provider = provider
        if load_weights:
            if hf_path is None and self.hf_path is None:
                raise ConfigError("load_weights=True needs a checkpoint: use from_hf_pretrained, or pass hf_path=")
            provider.perform_initialization = False

            def _load(chunks: list[torch.nn.Module]) -> list[torch.nn.Module]:
                self.load_hf_weights(chunks, hf_path=hf_path)
                return chunks

            provider.register_pre_wrap_hook(_load)
        return provider

    def to_megatron_model(self, load_weights: bool = True, hf_path: str | Path | None = None, *,
                          wrap_with_ddp: bool = False, seed: int = 1234, **provider_overrides: Any
                          ) -> list[torch.nn.Module]:
        """Build this rank's model chunks in one call: provider, ``provider_overrides`` set on it
        (``tensor_model_parallel_size=2``, any ``TransformerConfig`` field), finalize, build, fill.

        Megatron-Bridge passes its extra keywords to ``provide_distributed_model``; ours has only
        ``wrap_with_ddp`` and ``seed`` there, so every other keyword is a provider field (an unknown name
        is an error naming the closest fields).
        """
        provider = self.to_megatron_provider(load_weights, hf_path)
        for name, value in provider_overrides.items():
            setattr(provider, name, value)
        provider.finalize()
        return provider.provide_distributed_model(wrap_with_ddp=wrap_with_ddp, seed=seed)

    @property
    def transformer_config(self):
        """The MCore ``TransformerConfig`` this model maps to (for the installed megatron-core)."""
        return self.bridge.provider_bridge(self.hf_config).transformer_config()

    @property
    def mla_transformer_config(self):
        """The MCore ``MLATransformerConfig`` of a Multi-Latent-Attention family (DeepSeek-V3).

        Megatron-Bridge builds one from any provider; ours refuses a family without MLA, whose
        fields (``q_lora_rank``, ``kv_lora_rank``, ...) would be defaults describing no real model.
        """
        provider = self.bridge.provider_bridge(self.hf_config)
        if provider.config_class != "MLATransformerConfig":
            raise ConfigError(
                f"{self.bridge.architecture} does not use Multi-Latent Attention (its provider builds a "
                f"{provider.config_class}); use transformer_config instead"
            )
        return provider.transformer_config()

    def _current_provider(self) -> GPTModelProvider:
        if self._provider is None:
            self._provider = self.bridge.provider_bridge(self.hf_config)
        return self._provider

    def get_conversion_tasks(self, megatron_model: Any, hf_path: str | Path | None = None
                             ) -> list[conversion.ConversionTask]:
        """One task per parameter of this rank's chunks, with its resolved mapping.

        ``hf_path`` is accepted for Megatron-Bridge's signature; tasks depend on the model and the mapping
        table only, so it is not read.
        """
        registry = self.bridge.model_registry(self._current_provider())
        return conversion.build_tasks(registry, _chunks(megatron_model))

    def load_hf_weights(self, model: Any, hf_path: str | Path | None = None) -> None:
        """Fill ``model`` (this rank's chunks) from the HF checkpoint (a path or Hub ID); mismatches are errors."""
        from bridge.checkpoint.reader import HFCheckpointReader

        path = self._weights_dir(hf_path)
        provider = self._current_provider()
        tasks = self.get_conversion_tasks(model)
        reader = HFCheckpointReader(path)
        conversion.load_weights(tasks, reader, self.bridge.mapping_context(provider),
                                ignored_hf_patterns=self.bridge.ignored_hf_patterns)
        log.info("loaded %d parameters from %s", len(tasks), path)

    def export_hf_weights(self, model: Any, cpu: bool | None = None, show_progress: bool = True,
                          conversion_tasks: list[conversion.ConversionTask] | None = None,
                          merge_adapter_weights: bool = True, weight_dtype: torch.dtype | None = None, *,
                          on_host: bool | None = None) -> Iterator[HFWeightTuple]:
        """Stream :class:`HFWeightTuple` ``(param_name, weight)`` in HF names, one parameter at a time.

        ``cpu`` (Megatron-Bridge's name) and ``on_host`` (ours) mean the same: ``True`` yields CPU tensors,
        ``False`` leaves them on the model's device; the default is ``True`` (Megatron-Bridge's is
        ``False``), and passing both with different values is an error. Tensors are yielded on global
        rank 0 only (Megatron-Bridge yields them on every rank); every rank must exhaust the iterator.
        ``weight_dtype`` casts every tensor. ``show_progress`` and ``merge_adapter_weights`` are accepted
        and do nothing (no progress bar here, no adapters in our models).
        """
        if cpu is not None and on_host is not None and bool(cpu) != bool(on_host):
            raise ConfigError(f"cpu={cpu} and on_host={on_host} contradict each other (they are the same switch); "
                              "pass one of them")
        host = True if cpu is None and on_host is None else bool(on_host if on_host is not None else cpu)
        provider = self._current_provider()
        registry = self.bridge.model_registry(provider)
        tasks = conversion_tasks if conversion_tasks is not None else conversion.build_tasks(registry, _chunks(model))
        return _named(conversion.iter_export(tasks, registry, self.bridge.mapping_context(provider), on_host=host),
                      weight_dtype)

    def save_hf_pretrained(self, model: Any, path: str | Path, *, overwrite: bool = False,
                           max_shard_size: int | str | None = None, durable: bool = True) -> Path | None:
        """Export to an HF checkpoint directory (atomically, on global rank 0). Returns the path on rank 0.

        ``durable`` (the default) ``fsync``s every file before the directory is renamed into place, so a
        crash never leaves a committed but incomplete checkpoint; ``durable=False`` skips that (the rename is
        still atomic), which is what ``save_pretrained`` and Megatron-Bridge do, and much faster on slow disks.
        """
        return self._write_hf(model, path, companions=True, overwrite=overwrite, max_shard_size=max_shard_size,
                              durable=durable)

    def save_hf_weights(self, model: Any, path: str | Path, show_progress: bool = True, strict: bool = True,
                        merge_adapter_weights: bool = True, distributed_save: bool = False,
                        save_every_n_ranks: int = 1, weight_dtype: torch.dtype | None = None, *,
                        overwrite: bool = False, max_shard_size: int | str | None = None,
                        durable: bool = True) -> None:
        """Write only the weights (safetensors shards and their index; no config, tokenizer or code) to ``path``.

        Like :meth:`save_hf_pretrained`, the directory appears atomically and an existing non-empty one is
        replaced only with ``overwrite=True`` (Megatron-Bridge writes into it). The export is always strict
        (every tensor of the source checkpoint, no other); ``distributed_save`` is not supported.
        """
        if distributed_save or save_every_n_ranks != 1:
            raise UnsupportedFeatureError("distributed_save / save_every_n_ranks are not supported: rank 0 writes "
                                          "every shard; call save_hf_weights without them")
        self._write_hf(model, path, companions=False, overwrite=overwrite, max_shard_size=max_shard_size,
                       durable=durable, weight_dtype=weight_dtype)

    def _write_hf(self, model: Any, out_dir: str | Path, *, companions: bool, overwrite: bool,
                  max_shard_size: int | str | None, durable: bool,
                  weight_dtype: torch.dtype | None = None) -> Path | None:
        from bridge.hf_writing import write_hf_stream

        stream = self.export_hf_weights(model, on_host=False)  # the writer stages device tensors itself
        rank0 = not dist.is_initialized() or dist.get_rank() == 0
        source_dir = self.fetch(hub.ALL if companions else hub.WEIGHTS) if rank0 and self.hf_path is not None else None
        config = self.bridge.export_config(self.hf_config) if companions else None
        return write_hf_stream(stream, out_dir, source_dir=source_dir, config=config, companions=companions,
                               overwrite=overwrite, max_shard_size=max_shard_size, durable=durable,
                               weight_dtype=weight_dtype)
    # -- Megatron-LM torch_dist checkpoints (bridge.megatron_ckpt) ----------------------------
    @classmethod
    def import_ckpt(cls, hf_model_id: str | Path, megatron_path: str | Path, **provider_overrides: Any) -> Path:
        """HF checkpoint (path or Hub ID) -> Megatron-LM ``torch_dist`` checkpoint (see
        :func:`bridge.megatron_ckpt.import_ckpt`); ``hf_model_id`` is Megatron-Bridge's parameter name."""
        from bridge.megatron_ckpt import import_ckpt

        return import_ckpt(hf_model_id, megatron_path, open_bridge=cls.from_hf_pretrained, **provider_overrides)

    @classmethod
    def export_ckpt(cls, megatron_path: str | Path, hf_path: str | Path, **kwargs: Any) -> Path:
        """Megatron-LM ``torch_dist`` checkpoint -> HF checkpoint (see :func:`bridge.megatron_ckpt.export_ckpt`)."""
        from bridge.megatron_ckpt import export_ckpt

        return export_ckpt(megatron_path, hf_path, open_bridge=cls.from_hf_pretrained, **kwargs)

    def save_megatron_model(self, model: Any, path: str | Path, *, overwrite: bool = False) -> Path:
        """Save built chunks as a ``torch_dist`` checkpoint with this bridge's HF files (every rank calls it)."""
        from bridge.megatron_ckpt import save_megatron_model

        from bridge.saved_checkpoint import source_record

        architectures = list(getattr(self.hf_config, "architectures", None) or [])
        return save_megatron_model(model, path, provider=self._current_provider(),
                                   architecture=architectures[0] if architectures else self.bridge.architecture,
                                   hf_source=self.hf_path, overwrite=overwrite,
                                   hf_model=source_record(self.source) if self.source is not None else None)

    def load_megatron_model(self, path: str | Path, *, tp: int = 1, pp: int = 1, ep: int = 1,
                            **provider_overrides: Any) -> list[torch.nn.Module]:
        """Build this bridge's model at ``tp`` x ``pp`` x ``ep`` and load a ``torch_dist`` checkpoint into it
        (resharded on load; shapes checked first). Returns this rank's model chunks."""
        from bridge.megatron_ckpt import load_checkpoint_model

        provider = self.to_megatron_provider(load_weights=False)
        provider.tensor_model_parallel_size, provider.pipeline_model_parallel_size = tp, pp
        provider.expert_model_parallel_size = ep
        provider.perform_initialization = False
        for name, value in provider_overrides.items():
            setattr(provider, name, value)
        return load_checkpoint_model(path, provider=provider, bridge=self).model
