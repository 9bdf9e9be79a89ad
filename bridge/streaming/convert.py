"""Offline HF -> Megatron conversion into the saved layout, without building an MCore model.

:func:`convert_checkpoint` plans from headers and ``config.json`` alone
(:func:`~bridge.streaming.plan.plan_import`), validates the whole TP x PP layout (every shard
shape) before reading any tensor, then writes the rank files of each pipeline stage, parameter by
parameter: each TP rank's shard is its rows or columns of the HF tensors
(:func:`~bridge.streaming.shards.all_shard_pieces`), copied file to file into place (headers first,
so nothing waits in memory). Stages write their own files, so they run side by side on a few
threads (``copy_file_range``, ``preadv`` and ``pwritev`` release the GIL); the first failure stops
them all before the staging directory is removed. Memory holds at most one row-parallel weight per
stage being written (read once for all TP ranks); fused groups are never assembled. The output
appears atomically (layout.json, ``tp{r}_pp{s}.safetensors`` files, and the HF config, tokenizer
and custom code files) and is the same whatever the number of threads.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bridge import hub
from bridge._logging import get_logger
from bridge.checkpoint.atomic import AtomicDirectory, check_not_an_input
from bridge.checkpoint.companions import copy_companions
from bridge.checkpoint.paths import CheckpointDir
from bridge.errors import BridgeError, CheckpointError, ConfigError
from bridge.mappings import MappingContext
from bridge.parallel._safetensors import StreamingWriter
from bridge.parallel.layout_io import rank_file_name, shard_entries, write_layout_json
from bridge.parallel.spec import ParallelLayout
from bridge.parallel.state import Rank, placements
from bridge.saved_checkpoint import write_source_record
from bridge.parallel.vocab import vocab_padding
from bridge.streaming.family import DTYPES, family_of, parse_dtype
from bridge.streaming.files import Progress, ReadStats, SliceReader
from bridge.streaming.pieces import Scratch
from bridge.streaming.plan import ParamPlan, import_layout, plan_import
from bridge.streaming.shards import all_shard_pieces

__all__ = ["DTYPES", "ConversionResult", "convert_checkpoint", "family_for", "family_of", "parse_dtype"]

log = get_logger("streaming.convert")

@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert_checkpoint` wrote: ``tensors`` over all rank files, ``bytes`` of tensor data."""

    path: Path
    layout: ParallelLayout
    tensors: int
    bytes: int
    seconds: float
    reads: ReadStats


def family_for(config_dir: str | os.PathLike[str], trust_remote_code: bool | None, *, revision: str | None = None):
    """``(family bridge, provider, mapping registry, mapping context)`` for the HF config in ``config_dir``
    (a directory or a Hub ID, at ``revision``).

    Goes through :meth:`AutoBridge.from_hf_pretrained`, so the trust policy for custom code applies; the config
    may come from :mod:`bridge.config_cache` (no transformers import).
    """
    from bridge.auto_bridge import AutoBridge

    return family_of(AutoBridge.from_hf_pretrained(config_dir, trust_remote_code=trust_remote_code, revision=revision,
                                                   config_cache=True))


def _stage_order(layout: ParallelLayout) -> dict[int, list[tuple[str, str]]]:
    """Stage -> ``(local_name, global_name)`` in the order :func:`shard_entries` lists the rank files."""
    out: dict[int, list[tuple[str, str]]] = {s: [] for s in range(layout.pp)}
    for name, places in placements(layout).items():
        for stage, local in places:
            out[stage].append((local, name))
    return out


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class _Stopped(BridgeError):
    """A stage gave up because another stage failed (never the error reported)."""


def _first_error(futures: Sequence[Future]) -> BaseException | None:
    errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, _Stopped)]
    return (real or errors or [None])[0]


def _run_stages(tasks: Sequence[Callable[[threading.Event], tuple[int, int]]], *,
                workers: int) -> list[tuple[int, int]]:
    """Run ``task(stop)`` for every stage on ``workers`` threads (inline, in order, when 1); their results.

    When a task raises, ``stop`` is set, tasks not yet started are skipped, running ones stop at their
    next parameter, and once all have returned the first error (not a :class:`_Stopped`) is raised, so
    the caller's cleanup never races a writer. An interrupt of the calling thread stops them the same way.
    """
    stop = threading.Event()
    if workers <= 1 or len(tasks) <= 1:
        return [task(stop) for task in tasks]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bridge-convert")
    futures = [pool.submit(task, stop) for task in tasks]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if _first_error(list(done)) is not None:
            stop.set()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    error = _first_error(futures)
    if error is not None:
        raise error
    return [f.result() for f in futures]


def _write_stage(stage: int, directory: Path, layout: ParallelLayout, order: list[tuple[str, str]],
                 plans: dict[str, ParamPlan], ctx: MappingContext, source: SliceReader,
                 entries: dict[Rank, list], bar: Progress, durable: bool, stop: threading.Event) -> tuple[int, int]:
    """Write the rank files of one pipeline stage, parameter by parameter (every TP rank's shard in turn);
    give up (:class:`_Stopped`) at the next parameter once ``stop`` is set."""
    paths = [directory / rank_file_name(r, stage) for r in range(layout.tp)]
    written, scratch = 0, Scratch(mapped=True)  # row-parallel weights: copied from the page cache
    with ExitStack() as stack:
        writers = [stack.enter_context(StreamingWriter(path, entries[(r, stage)], {
            "format": "pt", "tp_rank": str(r), "pp_rank": str(stage)})) for r, path in enumerate(paths)]
        for local, name in order:
            if stop.is_set():
                raise _Stopped(f"stage {stage} stopped because another stage failed")
            shards = all_shard_pieces(plans[name].mapping, ctx, source, tp=layout.tp, scratch=scratch)
            for writer, pieces in zip(writers, shards, strict=True):
                pieces = pieces.to(layout.params[name].dtype)
                writer.write_parts(local, pieces)
                written += pieces.nbytes
                bar.advance(pieces.nbytes)
            del shards
    if durable:
        for path in paths:
            _fsync(path)
    log.debug("wrote stage %d: %d rank files, %d bytes", stage, len(paths), written)
    return len(order) * layout.tp, written


def convert_checkpoint(
    hf_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tp: int = 1,
    pp: int = 1,
    dtype: str | torch.dtype | None = "keep",
    first_stage_layers: int | None = None,
    last_stage_layers: int | None = None,
    overwrite: bool = False,
    trust_remote_code: bool | None = None,
    progress: bool | None = None,
    durable: bool = True,
    workers: int | None = None,
    revision: str | None = None,
    should_pad_vocab: bool = False,
    model_class: str = "gpt",
) -> ConversionResult:
    """Convert the HF checkpoint in ``hf_dir`` to a saved Megatron layout (TP x PP) in ``out_dir``.

    Args:
        hf_dir: a local HF checkpoint directory (safetensors weights, ``config.json``), or a Hub ID
            ``org/name`` resolved by :func:`bridge.hub.resolve_hf_source` (config first, then the weights
            and companion files of the same commit; ``HF_HUB_OFFLINE`` means the cache only).
        out_dir: the layout directory to create; must not exist (or be empty) unless ``overwrite``.
        tp, pp: tensor- and pipeline-parallel sizes of the layout.
        dtype: ``"keep"`` (the checkpoint's dtypes), ``"bf16"``, ``"fp16"``, ``"fp32"`` or a torch dtype.
        first_stage_layers, last_stage_layers: MCore's uneven first/last pipeline stages.
        overwrite: replace an existing layout at ``out_dir`` once the new one is complete.
        trust_remote_code: as in :meth:`AutoBridge.from_hf_pretrained` (custom-code checkpoints).
        progress: show a progress bar (``None``: only on a terminal).
        durable: ``fsync`` every file before the directory is renamed into place.
        workers: threads writing pipeline stages side by side (``None``: one per stage, at most one per
            CPU core; 1: one stage after the other). The files are the same either way.
        revision: branch, tag or commit of a Hub ID (``hf_source.json`` in the output records the commit).
        should_pad_vocab: pad the vocabulary to a multiple of ``make_vocab_size_divisible_by`` x ``tp`` (as
            Megatron-LM does); by default it is padded only when ``tp`` does not divide it. ``layout.json``
            records the padding (``vocab_padding``), and export strips exactly it.
        model_class: whose parameter names the layout holds: ``"gpt"`` (``GPTModel``, loads into both) or
            ``"hybrid"`` (``HybridModel``, ``decoder.layers.{2i}``/``{2i+1}``); ``layout.json`` records it.

    Raises:
        ParallelLayoutError: ``tp``/``pp`` do not fit the model (e.g. ``tp`` does not divide the query
            groups); raised before anything is written.
        WeightMismatchError: the checkpoint and its config or mapping table disagree.
        CheckpointError: unreadable input, or ``out_dir`` exists without ``overwrite``.
        ConfigError: an unknown ``dtype``.
    """
    started = time.perf_counter()
    target = parse_dtype(dtype)
    from bridge.auto_bridge import AutoBridge

    auto = AutoBridge.from_hf_pretrained(hf_dir, trust_remote_code=trust_remote_code, revision=revision,
                                         config_cache=True)
    hf_dir = auto.fetch(hub.ALL)  # a Hub ID's weights and companions, from the commit its config came from
    check_not_an_input(out_dir, [hf_dir], action="convert")
    family, provider, registry, ctx = family_of(auto)
    if should_pad_vocab:
        provider.should_pad_vocab = True
        ctx = family.mapping_context(provider)
    padding = vocab_padding(provider.vocab_size, tp=tp, should_pad=should_pad_vocab,
                            divisible_by=provider.make_vocab_size_divisible_by)
    if padding.padding:
        log.info("%s", padding.describe())
    source = SliceReader(hf_dir)
    plans = plan_import(source, registry, ctx, names=source.keys(), ignored_hf_patterns=family.ignored_hf_patterns)
    layout = import_layout(plans, ctx, tp=tp, pp=pp, num_layers=provider.num_layers,
                           first_stage_layers=first_stage_layers, last_stage_layers=last_stage_layers,
                           share_embeddings_and_output_weights=provider.share_embeddings_and_output_weights,
                           dtype=target)
    if model_class != layout.model_class:  # planned under the family's GPT names, saved under the class's
        from bridge.hybrid import rename_for

        rename = rename_for(layout.model_class, model_class)
        layout = layout.relabeled(model_class)
        plans = [dataclasses.replace(p, name=rename(p.name)) for p in plans]
    entries = shard_entries(layout)  # every shard shape: raises before anything is read or written
    order = _stage_order(layout)
    by_name = {p.name: p for p in plans}
    total = sum(torch.Size(shape).numel() * dt.itemsize for e in entries.values() for _, dt, shape in e)
    count = sum(len(e) for e in entries.values())
    staging = AtomicDirectory(out_dir, overwrite=overwrite, durable=durable)
    try:
        with Progress(total_bytes=total, total_tensors=count, desc="convert", enabled=progress) as bar:
            threads = min(layout.pp, os.cpu_count() or 1) if workers is None else workers
            done = _run_stages([partial(_write_stage, stage, staging.staging, layout, order[stage], by_name, ctx,
                                        source, entries, bar, durable) for stage in range(layout.pp)], workers=threads)
            tensors, nbytes = sum(n for n, _ in done), sum(b for _, b in done)
        write_layout_json(staging.staging, layout)
        write_source_record(staging.staging, auto.source)
        copy_companions(CheckpointDir.resolve(hf_dir), staging.staging, durable=durable)
        path = staging.commit()
    except BaseException:
        staging.abort()
        raise
    reads = source.stats
    seconds = time.perf_counter() - started
    log.info("converted %s -> %s (TP=%d, PP=%d): %d tensors, %.2f GB in %.2f s", hf_dir, path, tp, pp, tensors,
             nbytes / 1e9, seconds)
    return ConversionResult(path, layout, tensors, nbytes, seconds, reads)
