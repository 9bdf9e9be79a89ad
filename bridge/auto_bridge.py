"""``AutoBridge``: the user-facing entry point (load, convert, export, inspect).

>>> bridge = AutoBridge.from_hf_pretrained("/path/to/llama")       # doctest: +SKIP
>>> provider = bridge.to_megatron_provider()                        # doctest: +SKIP
>>> provider.tensor_model_parallel_size = 1; provider.finalize()    # doctest: +SKIP
>>> model = provider.provide_distributed_model(wrap_with_ddp=False) # doctest: +SKIP
>>> bridge.save_hf_pretrained(model, "/tmp/out")                    # doctest: +SKIP

Nothing from a checkpoint runs before the trust policy allows it: the architecture is
read from ``config.json`` as JSON, and custom code (``auto_map``) is imported only with
``trust_remote_code=True`` or for a Hub ID of an org in :data:`bridge.trust.SAFE_REPOS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as dist

from bridge import conversion, trust
from bridge._logging import get_logger
from bridge.errors import CheckpointError, ConfigError
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge, bridge_for_architectures, registered_architectures

__all__ = ["AutoBridge"]

log = get_logger("auto_bridge")


def _read_config_json(path: Path) -> dict[str, Any]:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"expected {cfg} (an HF checkpoint directory has a config.json); found none")
    try:
        data = json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg} is not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg} must hold a JSON object, found {type(data).__name__}")
    return data


def _native_model_type(model_type: str | None) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def _chunks(model: Any) -> list[torch.nn.Module]:
    return list(model) if isinstance(model, (list, tuple)) else [model]


class AutoBridge:
    """HF checkpoint (or config) + the family bridge that handles it."""

    def __init__(self, hf_config: Any, *, hf_path: Path | None, bridge: MegatronModelBridge,
                 trust_remote_code: bool | None = None) -> None:
        self.hf_config = hf_config
        self.hf_path = hf_path
        self.bridge = bridge
        self.trust_remote_code = trust_remote_code
        self._provider: GPTModelProvider | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_hf_pretrained(cls, path: str | Path, trust_remote_code: bool | None = None, **kwargs: Any) -> "AutoBridge":
        """Load an HF checkpoint directory's config (weights are read lazily later)."""
        local = Path(path).expanduser()
        if not local.is_dir():
            raise CheckpointError(
                f"expected a local HF checkpoint directory, found no directory at {str(path)!r}. "
                "This tool works offline: download the checkpoint first (huggingface-cli download ...)."
            )
        raw = _read_config_json(local)
        bridge_cls = bridge_for_architectures(raw.get("architectures"), source=str(local / "config.json"))
        if trust.needs_remote_code(raw) and not _native_model_type(raw.get("model_type")):
            trust.require_trust(path, trust_remote_code, what=f"config and model classes {raw.get('auto_map')}")
            use_code = True
        else:
            use_code = False
        from transformers import AutoConfig

        hf_config = AutoConfig.from_pretrained(str(local), trust_remote_code=use_code, **kwargs)
        log.debug("loaded %s config from %s with %s", bridge_cls.architecture, local, bridge_cls.__name__)
        return cls(hf_config, hf_path=local, bridge=bridge_cls(), trust_remote_code=trust_remote_code)

    @classmethod
    def from_hf_config(cls, config: Any) -> "AutoBridge":
        """A bridge for an HF config object (no weights)."""
        bridge_cls = bridge_for_architectures(getattr(config, "architectures", None), source=type(config).__name__)
        return cls(config, hf_path=None, bridge=bridge_cls())

    @classmethod
    def list_supported_models(cls) -> list[str]:
        """Every registered architecture name, sorted."""
        return registered_architectures()

    @classmethod
    def can_handle(cls, path: str | Path, trust_remote_code: bool | None = None) -> bool:
        """Whether a registered bridge handles the checkpoint's architecture (reads JSON only, runs no code)."""
        try:
            raw = _read_config_json(Path(path).expanduser())
            bridge_for_architectures(raw.get("architectures"))
        except (CheckpointError, ConfigError, ValueError, OSError):
            return False
        return True

    # -- providers and models ----------------------------------------------------------------
    def to_megatron_provider(self, load_weights: bool = True, hf_path: str | Path | None = None) -> GPTModelProvider:
        """A provider for this model; with ``load_weights`` the built chunks are filled from the checkpoint."""
        provider = self.bridge.provider_bridge(self.hf_config)
        self._provider = provider
        path = Path(hf_path) if hf_path else self.hf_path
        if load_weights:
            if path is None:
                raise ConfigError("load_weights=True needs a checkpoint: use from_hf_pretrained, or pass hf_path=")
            provider.perform_initialization = False

            def _load(chunks: list[torch.nn.Module]) -> list[torch.nn.Module]:
                self.load_hf_weights(chunks, hf_path=path)
                return chunks

            provider.register_pre_wrap_hook(_load)
        return provider

    @property
    def transformer_config(self):
        """The MCore ``TransformerConfig`` this model maps to (for the installed megatron-core)."""
        return self.bridge.provider_bridge(self.hf_config).transformer_config()

    def _current_provider(self) -> GPTModelProvider:
        if self._provider is None:
            self._provider = self.bridge.provider_bridge(self.hf_config)
        return self._provider

    def get_conversion_tasks(self, model: Any) -> list[conversion.ConversionTask]:
        """One task per parameter of this rank's chunks, with its resolved mapping."""
        registry = self.bridge.mapping_registry(self._current_provider())
        return conversion.build_tasks(registry, _chunks(model))

    def load_hf_weights(self, model: Any, hf_path: str | Path | None = None) -> None:
        """Fill ``model`` (this rank's chunks) from the HF checkpoint; mismatches are errors."""
        from bridge.checkpoint.reader import HFCheckpointReader

        path = Path(hf_path) if hf_path else self.hf_path
        if path is None:
            raise ConfigError("no checkpoint to load: pass hf_path= or use AutoBridge.from_hf_pretrained")
        provider = self._current_provider()
        tasks = self.get_conversion_tasks(model)
        reader = HFCheckpointReader(path)
        conversion.load_weights(tasks, reader, self.bridge.mapping_context(provider),
                                ignored_hf_patterns=self.bridge.ignored_hf_patterns)
        log.info("loaded %d parameters from %s", len(tasks), path)

    def export_hf_weights(self, model: Any, *, on_host: bool = True) -> Iterable[tuple[str, torch.Tensor]]:
        """Stream ``(hf_name, tensor)`` on rank 0 (every rank must iterate); CPU tensors unless ``on_host=False``
        (then they stay on the model's device)."""
        provider = self._current_provider()
        registry = self.bridge.mapping_registry(provider)
        tasks = conversion.build_tasks(registry, _chunks(model))
        return conversion.iter_export(tasks, registry, self.bridge.mapping_context(provider), on_host=on_host)

    def save_hf_pretrained(self, model: Any, out_dir: str | Path, *, overwrite: bool = False,
                           max_shard_size: int | str | None = None, durable: bool = True) -> Path | None:
        """Export to an HF checkpoint directory (atomically, on global rank 0). Returns the path on rank 0.

        ``durable`` (the default) ``fsync``s every file before the directory is renamed into place, so a
        crash never leaves a committed but incomplete checkpoint; ``durable=False`` skips that (the rename is
        still atomic), which is what ``save_pretrained`` and Megatron-Bridge do, and much faster on slow disks.
        """
        from bridge.checkpoint.reader import HFCheckpointReader
        from bridge.checkpoint.writer import HFCheckpointWriter

        rank = dist.get_rank() if dist.is_initialized() else 0
        stream = self.export_hf_weights(model, on_host=False)  # the writer stages device tensors itself
        if rank != 0:
            for _ in stream:
                pass
            dist.barrier()
            return None
        source = HFCheckpointReader(self.hf_path) if self.hf_path else None
        target_dtype = {}
        expected = None
        if source is not None:
            target_dtype = {n: source.dtype(n) for n in source.keys()}
            # The source's tensors are what the stream will yield: the writer can write each as it arrives.
            expected = {n: (source.dtype(n), source.shape(n)) for n in source.keys()}
        kwargs: dict[str, Any] = {"overwrite": overwrite, "source_dir": self.hf_path, "durable": durable,
                                  "expected": expected}
        if max_shard_size is not None:
            kwargs["max_shard_size"] = max_shard_size
        with HFCheckpointWriter(out_dir, config=self.bridge.export_config(self.hf_config), **kwargs) as writer:
            for name, tensor in stream:
                dtype = target_dtype.get(name, tensor.dtype)
                # The stream's tensors stay unchanged until they are written: no second copy needed (a
                # device tensor goes to disk through the writer's reused host slots).
                writer.add(name, tensor.to(dtype), copy=False)
                del tensor  # the stream gathers the next parameter on resuming: drop this one first
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
        log.info("exported HF checkpoint to %s", out_dir)
        return Path(out_dir)
