"""Which files of a checkpoint directory hold the weights, and the ``model.safetensors.index.json`` format.

Discovery follows ``transformers`` (``modeling_utils._get_resolved_checkpoint_files``) so that we read the
same weights it would: ``model.safetensors`` first, then ``model.safetensors.index.json``; beyond
``transformers``, a directory whose only safetensors file has another name is accepted too. Pickled
weights (``pytorch_model.bin``) are refused with a recipe to convert them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge._logging import get_logger
from bridge.checkpoint.paths import CheckpointDir, check_member_name
from bridge.errors import CheckpointError

__all__ = [
    "INDEX_NAME",
    "SINGLE_NAME",
    "WeightLayout",
    "discover_layout",
    "encode_index",
    "shard_name",
]

log = get_logger("checkpoint.index")

SINGLE_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def shard_name(number: int, count: int) -> str:
    """``transformers``' name of shard ``number`` (1-based) of ``count``; the single file when ``count == 1``."""
    if count == 1:
        return SINGLE_NAME
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def encode_index(weight_map: Mapping[str, str], *, total_size: int, total_parameters: int) -> str:
    """The index text exactly as ``save_pretrained`` writes it (sorted keys, indent 2, final newline)."""
    index = {
        "metadata": {"total_parameters": total_parameters, "total_size": total_size},
        "weight_map": dict(weight_map),
    }
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class WeightLayout:
    """Where the weights are: ``weight_map`` is ``None`` for a single file (names come from its header)."""

    files: tuple[str, ...]
    index_file: str | None = None
    weight_map: Mapping[str, str] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _pickle_error(root: CheckpointDir, found: list[str]) -> CheckpointError:
    return CheckpointError(
        f"{root.path} holds only pickled weights ({', '.join(found[:5])}); only safetensors is supported "
        "(pickles can run code when loaded). If you trust the checkpoint, convert it once with: "
        f"python -c \"import transformers as t; t.AutoModelForCausalLM.from_pretrained('{root.path}')"
        f".save_pretrained('{root.path}-safetensors')\" and read the new directory"
    )


def _parse_index(root: CheckpointDir) -> WeightLayout:
    raw = root.load_json(INDEX_NAME, allow_constants=False)
    where = root.path / INDEX_NAME
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: expected a JSON object with 'weight_map', found {type(raw).__name__}")
    weight_map, metadata = raw.get("weight_map"), raw.get("metadata", {})
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{where}: expected a non-empty 'weight_map' object (tensor name -> shard file), "
            f"found {weight_map!r:.80}; re-export the checkpoint"
        )
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{where}: 'metadata' must be an object, found {type(metadata).__name__}")
    for name, file in weight_map.items():
        if not name:
            raise CheckpointError(f"{where}: weight_map has an empty tensor name")
        check_member_name(file, context=f"{where}: weight_map[{name!r:.120}]")
        if not file.endswith(".safetensors"):
            raise CheckpointError(
                f"{where}: weight_map[{name!r:.120}] = {file!r:.120} is not a .safetensors file; "
                "only safetensors is supported"
            )
    return WeightLayout(
        files=tuple(sorted(set(weight_map.values()))),
        index_file=INDEX_NAME,
        weight_map=dict(weight_map),
        metadata=dict(metadata),
    )


def discover_layout(root: CheckpointDir) -> WeightLayout:
    """Find the weight files of ``root`` (no weight file is opened here, only the index)."""
    names = root.names()
    has_single = SINGLE_NAME in names and root.member(SINGLE_NAME, context="locating weights") is not None
    if has_single:
        if INDEX_NAME in names:
            log.warning("%s has both %s and %s; reading %s as transformers does", root.path, SINGLE_NAME,
                        INDEX_NAME, SINGLE_NAME)
        return WeightLayout(files=(SINGLE_NAME,))
    if INDEX_NAME in names:
        return _parse_index(root)
    singles = [n for n in names if n.endswith(".safetensors")]
    if len(singles) == 1:
        root.require(singles[0], context="locating weights")
        return WeightLayout(files=(singles[0],))
    if len(singles) > 1:
        raise CheckpointError(
            f"{root.path} has {len(singles)} safetensors files ({', '.join(singles[:5])}) but no {INDEX_NAME}; "
            f"cannot tell which hold the model. Add an index or keep only {SINGLE_NAME}"
        )
    pickles = [n for n in names if n.endswith(_PICKLE_SUFFIXES) or n.endswith(".bin.index.json")]
    if pickles:
        raise _pickle_error(root, pickles)
    raise CheckpointError(
        f"{root.path} has no {SINGLE_NAME}, no {INDEX_NAME} and no other *.safetensors file; "
        "expected a Hugging Face checkpoint folder (config.json + safetensors weights)"
    )
