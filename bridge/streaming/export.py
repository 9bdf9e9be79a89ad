"""Offline Megatron -> HF export from a saved layout, without building an MCore model.

:func:`export_checkpoint` reads ``layout.json`` and the HF ``config.json`` stored next to it (by
:func:`~bridge.streaming.convert.convert_checkpoint`, or given with ``config_dir``), plans every
output tensor on meta tensors (:func:`~bridge.streaming.plan.plan_export`), then takes one
parameter at a time from its owner stage's TP rank files and writes each of its HF tensors at its
final place in the output shards (:class:`~bridge.streaming.hf_out.PlannedHFWriter`), as byte spans
cut straight out of the shards (:func:`~bridge.streaming.merges.hf_pieces`) and copied file to file:
memory holds at most one parameter, whatever ``max_shard_size``. The output is the ``transformers`` layout (sharded
safetensors with ``{"format": "pt"}`` metadata and ``model.safetensors.index.json`` when there is
more than one shard), dtypes as saved, with the config, tokenizer and custom code files; it
appears atomically. Tied copies on other stages are not read (``mcore-compat reshard`` checks them).
Writes stay on one thread: writes to one file serialise on its inode lock in the kernel (two writer
threads measured no faster, at 60% more CPU), and reading the next row-parallel shards on a helper
thread measured no faster either (see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from bridge import hub
from bridge._logging import get_logger
from bridge.checkpoint.atomic import check_not_an_input
from bridge.checkpoint.paths import CheckpointDir
from bridge.checkpoint.writer import DEFAULT_MAX_SHARD_SIZE, parse_size
from bridge.errors import CheckpointError, ConfigError
from bridge.parallel.layout_io import check_rank_files, layout_vocab_padding, rank_file_name, read_layout
from bridge.parallel.state import placements
from bridge.streaming.convert import family_for, family_of
from bridge.streaming.files import Progress, SpanFiles
from bridge.streaming.hf_out import planned_export
from bridge.streaming.merges import hf_pieces
from bridge.streaming.pieces import Scratch
from bridge.streaming.plan import plan_export

__all__ = ["ExportResult", "export_checkpoint"]

log = get_logger("streaming.export")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_checkpoint` wrote: weight ``files``, ``tensors``, ``bytes`` of tensor data."""

    path: Path
    files: tuple[str, ...]
    tensors: int
    bytes: int
    seconds: float


def export_checkpoint(
    megatron_dir: str | os.PathLike[str],
    hf_dir: str | os.PathLike[str],
    *,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    config_dir: str | os.PathLike[str] | None = None,
    trust_remote_code: bool | None = None,
    progress: bool | None = None,
    durable: bool = True,
    revision: str | None = None,
) -> ExportResult:
    """Write the saved Megatron layout in ``megatron_dir`` as an HF checkpoint in ``hf_dir``.

    Args:
        megatron_dir: a layout written by :func:`~bridge.streaming.convert.convert_checkpoint` (or
            :func:`~bridge.parallel.layout_io.save_layout` / ``reshard``, with ``config_dir``).
        hf_dir: the HF checkpoint directory to create; must not exist (or be empty) unless ``overwrite``.
        max_shard_size: bytes per weight file, an int or a string like ``"5GB"`` (default: ``save_pretrained``'s).
        overwrite: replace an existing checkpoint at ``hf_dir`` once the new one is complete.
        config_dir: where ``config.json`` (and tokenizer, custom code) are; default ``megatron_dir``. A Hub ID
            ``org/name`` (at ``revision``) is resolved by :func:`bridge.hub.resolve_hf_source`, without weights.
        trust_remote_code: as in :meth:`AutoBridge.from_hf_pretrained`.
        progress: show a progress bar (``None``: only on a terminal).
        durable: ``fsync`` every file before the directory is renamed into place.
        revision: branch, tag or commit when ``config_dir`` is a Hub ID.

    Raises:
        CheckpointError: ``megatron_dir`` is not a complete saved layout, has no config, or ``hf_dir``
            exists without ``overwrite``.
        MappingError, WeightMismatchError: the layout does not belong to the config's model family.
        ConfigError: the config and the layout disagree on tied embeddings or the vocabulary size.
    """
    started = time.perf_counter()
    source = Path(megatron_dir)
    layout = read_layout(source)
    check_rank_files(source, layout)
    auto = None
    if config_dir is not None and isinstance(config_dir, str) and not Path(config_dir).expanduser().is_dir():
        # not a directory: a Hub ID (malformed ones are refused before any lookup), resolved with its companions
        from bridge.auto_bridge import AutoBridge

        auto = AutoBridge.from_hf_pretrained(config_dir, trust_remote_code=trust_remote_code, revision=revision,
                                             config_cache=True)
        config_dir = auto.fetch(hub.COMPANIONS)
    config_dir = Path(config_dir) if config_dir is not None else source
    if not (config_dir / "config.json").is_file():
        raise CheckpointError(
            f"{config_dir} has no config.json; pass the HF config directory the layout was converted from "
            "(config_dir=..., --config-dir on the command line)"
        )
    check_not_an_input(hf_dir, [source, config_dir], action="export")
    family, provider, registry, ctx = family_for(config_dir, trust_remote_code) if auto is None else family_of(auto)
    registry = family.model_registry(provider, layout.model_class)  # the names the layout holds: GPT or Hybrid
    if provider.share_embeddings_and_output_weights != layout.share_embeddings_and_output_weights:
        raise ConfigError(
            f"{config_dir / 'config.json'} says tie_word_embeddings={provider.share_embeddings_and_output_weights} "
            f"but the layout in {source} was saved with share_embeddings_and_output_weights="
            f"{layout.share_embeddings_and_output_weights}; use the config the layout was converted from"
        )
    padding = layout_vocab_padding(layout)
    if padding is not None and padding.vocab_size != provider.vocab_size:
        raise ConfigError(
            f"{config_dir / 'config.json'} says vocab_size={provider.vocab_size} but the layout in {source} holds a "
            f"vocabulary of {padding.vocab_size} ({padding.padded_size} rows with padding); use the config the "
            "layout was converted from"
        )
    planned = plan_export(layout, registry, ctx)
    tensors = [t for _, _, outs in planned for t in outs]
    places = placements(layout)
    files, scratch = SpanFiles(lambda rank: source / rank_file_name(*rank)), Scratch(mapped=True)
    with planned_export(hf_dir, tensors, max_shard_size=parse_size(max_shard_size), overwrite=overwrite,
                        durable=durable, companions=CheckpointDir.resolve(config_dir)) as export:
        writer = export.writer
        with Progress(total_bytes=writer.total_size, total_tensors=len(tensors), desc="export",
                      enabled=progress) as bar:
            for name, mapping, outs in planned:
                owner, local = places[name][0]
                shards = [files.whole((r, owner), local) for r in range(layout.tp)]
                for hf_name, pieces in hf_pieces(mapping, ctx, shards, layout.params[name], name=name,
                                                 scratch=scratch).items():
                    writer.write_pieces(hf_name, pieces)
                    bar.advance(pieces.nbytes)
                del shards
    path = export.path
    assert path is not None  # set when the block ends without an error
    seconds = time.perf_counter() - started
    log.info("exported %s -> %s: %d tensors, %.2f GB in %d file(s), %.2f s", source, path, len(tensors),
             writer.total_size / 1e9, len(writer.files), seconds)
    return ExportResult(path, tuple(writer.files), len(tensors), writer.total_size, seconds)
