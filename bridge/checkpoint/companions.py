"""The non-weight files a model folder needs next to its weights: config, generation config, tokenizer, code.

Only top-level regular files with known names (plus every top-level ``*.py``, which custom code named in
``auto_map`` imports) are copied, through the same path checks as the reader. Weights never are.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge._logging import get_logger
from bridge.checkpoint.paths import CheckpointDir

__all__ = ["COMPANION_FILES", "WEIGHT_SUFFIXES", "auto_map_modules", "companion_names", "copy_companions"]

log = get_logger("checkpoint.companions")

COMPANION_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack", ".gguf", ".onnx")


def auto_map_modules(config: Mapping[str, Any]) -> set[str]:
    """Local module names referenced by ``auto_map`` (``"modeling_x.XModel"`` -> ``"modeling_x"``).

    References into another repository (``"org/repo--modeling_x.XModel"``) are not local and are skipped.
    """
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        return set()
    refs: list[Any] = []
    for value in auto_map.values():
        refs.extend(value if isinstance(value, list) else [value])
    return {ref.rsplit(".", 1)[0] for ref in refs if isinstance(ref, str) and "--" not in ref and "." in ref}


def companion_names(source: CheckpointDir) -> list[str]:
    """Sorted names of the files of ``source`` to copy."""
    names = []
    for name in source.names():
        if name.endswith(WEIGHT_SUFFIXES) or name.endswith(".index.json"):
            continue
        if name in COMPANION_FILES or name.endswith(".py"):
            names.append(name)
    return names


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(dict(data), indent=2, sort_keys=True) + "\n", encoding="utf-8")


def copy_companions(
    source: CheckpointDir | None, destination: Path, *, config: Mapping[str, Any] | None = None, durable: bool = True
) -> list[str]:
    """Copy the companion files of ``source`` into ``destination``; ``config`` replaces ``config.json``.

    Returns the sorted names written. Missing custom-code modules named by ``auto_map`` are logged.
    """
    written: set[str] = set()
    if source is not None:
        for name in companion_names(source):
            if name == "config.json" and config is not None:
                continue
            real = source.member(name, context=f"copying {name} from {source.path}")
            if real is None:
                continue
            shutil.copyfile(real, destination / name)
            written.add(name)
    if config is not None:
        _write_json(destination / "config.json", config)
        written.add("config.json")
    modules: set[str] = set()
    for name in ("config.json", "tokenizer_config.json"):
        if name in written:
            try:
                modules |= auto_map_modules(json.loads((destination / name).read_text(encoding="utf-8")))
            except (ValueError, AttributeError):
                log.warning("%s is not a JSON object; its auto_map was not checked", name)
    for module in sorted(modules):
        if f"{module}.py" not in written:
            log.warning("auto_map names %s.py but the source has no such file; the export needs it", module)
    if durable:
        for name in written:
            with open(destination / name, "rb") as handle:
                os.fsync(handle.fileno())
    return sorted(written)
