"""What a saved Megatron checkpoint says about the HF model it belongs to.

* :func:`write_source_record` / :func:`read_source_record`: ``hf_source.json`` next to a saved layout
  names the HF checkpoint it was converted from (the Hub ID or absolute path, the revision asked for
  and the commit resolved), so :func:`hf_model_id_from_checkpoint` can answer Megatron-Bridge's
  ``AutoBridge.get_hf_model_id_from_checkpoint``.
* :func:`read_saved_layout` and :func:`check_layout_matches`: the checks behind
  ``AutoBridge.from_auto_config`` (a saved layout plus the HF config that must describe it).

Only ``layout.json`` directories are understood here; MCore ``torch_dist`` checkpoints are not yet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bridge._logging import get_logger
from bridge.errors import CheckpointError, ConfigError, WeightMismatchError
from bridge.hub import HFSource
from bridge.parallel.layout_io import LAYOUT_FILE, read_layout
from bridge.parallel.spec import ParallelLayout

__all__ = [
    "SOURCE_RECORD",
    "check_layout_matches",
    "hf_model_id_from_checkpoint",
    "read_saved_layout",
    "read_source_record",
    "source_record",
    "write_source_record",
]

log = get_logger("saved_checkpoint")

#: The file naming the HF checkpoint a saved layout was converted from.
SOURCE_RECORD = "hf_source.json"
_EMBEDDING = "embedding.word_embeddings.weight"


def source_record(source: HFSource) -> dict[str, Any]:
    """The ``hf_source.json`` document for ``source`` (a local path is recorded absolute)."""
    model_id = source.hub_id if source.is_hub else os.path.abspath(source.path)
    return {"hf_model_id": model_id, "revision": source.revision, "commit": source.commit}


def write_source_record(directory: str | os.PathLike[str], source: HFSource) -> None:
    """Write ``hf_source.json`` into ``directory`` (a staging directory being built)."""
    text = json.dumps(source_record(source), indent=1, sort_keys=True) + "\n"
    (Path(directory) / SOURCE_RECORD).write_text(text, encoding="utf-8")


def read_source_record(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``hf_source.json`` of ``directory``, or ``None`` when there is none.

    Raises:
        CheckpointError: the file exists but is not a JSON object with a string ``hf_model_id``.
    """
    path = Path(directory) / SOURCE_RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc}); delete it or re-run the conversion") from None
    if not isinstance(data, dict) or not isinstance(data.get("hf_model_id"), str):
        raise CheckpointError(f"{path} must be a JSON object with a string 'hf_model_id'; found {data!r:.200}")
    return data


def hf_model_id_from_checkpoint(path: str | os.PathLike[str]) -> str | None:
    """The HF model (Hub ID or absolute path) recorded in a saved checkpoint directory, or ``None``.

    Reads ``hf_source.json`` (written by ``mcore-compat convert``), else an ``hf_model_id`` entry of
    ``layout.json``. A directory that is neither a saved layout nor has a record gives ``None``.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"expected a saved Megatron checkpoint directory, found no directory at {directory}")
    record = read_source_record(directory)
    if record is not None:
        return record["hf_model_id"]
    layout_file = directory / LAYOUT_FILE
    if layout_file.is_file():
        try:
            value = json.loads(layout_file.read_text(encoding="utf-8")).get("hf_model_id")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None
    return None


def read_saved_layout(megatron_path: str | os.PathLike[str]) -> ParallelLayout:
    """The layout of a saved Megatron checkpoint directory, with an error that says what else it could be."""
    directory = Path(megatron_path)
    if not directory.is_dir():
        raise CheckpointError(f"expected a saved Megatron checkpoint directory, found no directory at {directory}")
    if not (directory / LAYOUT_FILE).is_file():
        found = sorted(p.name for p in directory.iterdir())[:8]
        raise CheckpointError(
            f"{directory} has no {LAYOUT_FILE}: only saved layouts (mcore-compat convert, save_layout, reshard) "
            f"are understood here; found {found}. Convert the HF checkpoint with `mcore-compat convert` first."
        )
    return read_layout(directory)


def check_layout_matches(layout: ParallelLayout, provider: Any, family: Any, *, where: str) -> None:
    """Check that ``layout`` is the model ``provider`` (built from an HF config) describes.

    Raises:
        ConfigError: the layer count, hidden size, vocabulary or tied embeddings differ.
        MappingError, WeightMismatchError: a parameter has no mapping, or cannot split into HF tensors.
    """
    from bridge.streaming.plan import plan_export

    problems = []
    if layout.pipeline.num_layers != provider.num_layers:
        problems.append(f"num_layers: layout {layout.pipeline.num_layers}, config {provider.num_layers}")
    if layout.share_embeddings_and_output_weights != provider.share_embeddings_and_output_weights:
        problems.append(f"tied embeddings: layout {layout.share_embeddings_and_output_weights}, "
                        f"config {provider.share_embeddings_and_output_weights}")
    spec = layout.params.get(_EMBEDDING)
    if spec is not None and spec.shape is not None:
        rows, hidden = spec.shape
        if hidden != provider.hidden_size:
            problems.append(f"hidden_size: layout {hidden} ({_EMBEDDING}), config {provider.hidden_size}")
        if rows < provider.vocab_size:
            problems.append(f"vocabulary: layout has {rows} embedding rows, config vocab_size {provider.vocab_size}")
    if problems:
        raise ConfigError(f"{where} do not describe the same model: " + "; ".join(problems)
                          + ". Pass the HF config the checkpoint was converted from.")
    try:
        plan_export(layout, family.mapping_registry(provider), family.mapping_context(provider))
    except WeightMismatchError as exc:
        raise WeightMismatchError(f"{where}: {exc}") from exc
    log.debug("%s: layout matches the config (%d parameters)", where, len(layout.params))
