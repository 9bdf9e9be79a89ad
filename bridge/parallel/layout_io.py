"""The saved Megatron layout: a directory that reshards offline without HF or MCore.

Directory format::

    <dir>/layout.json                   ParallelLayout.to_json(): format, version, tp, pp,
                                        num_layers, first/last_stage_layers,
                                        share_embeddings_and_output_weights, mtp, and per GLOBAL
                                        parameter name {kind, meta, dtype, shape (full, unpadded)},
                                        and vocab_padding: the VocabPadding record (HF vocabulary,
                                        padded rows, why) of the vocab-kind parameters at this TP;
                                        files written before it existed have none and still read
    <dir>/tp{r:02d}_pp{s:02d}.safetensors   one file per (TP rank r, PP rank s) holding that
                                        rank's LOCAL state dict (local layer numbers, TP shards,
                                        tied copies included); metadata tp_rank, pp_rank

Directories are written atomically by :class:`bridge.checkpoint.atomic.AtomicDirectory` (fsync, rollback,
and never replacing a directory that is not a checkpoint).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bridge._logging import get_logger
from bridge.checkpoint.atomic import AtomicDirectory
from bridge.errors import CheckpointError, ParallelLayoutError
from bridge.parallel.kinds import shard_shape
from bridge.parallel.spec import ParallelLayout
from bridge.parallel.state import Rank, expected_local_names, merge_state, placements
from bridge.parallel.vocab import DEFAULT_DIVISIBLE_BY, VocabPadding, vocab_padding_for

__all__ = [
    "LAYOUT_FILE",
    "check_rank_files",
    "layout_vocab_padding",
    "load_full_state",
    "load_layout",
    "rank_file_name",
    "read_layout",
    "save_layout",
    "shard_entries",
    "write_layout_json",
]

log = get_logger("parallel.layout_io")

LAYOUT_FILE = "layout.json"


def rank_file_name(tp_rank: int, pp_rank: int) -> str:
    """``tp{r:02d}_pp{s:02d}.safetensors``."""
    return f"tp{tp_rank:02d}_pp{pp_rank:02d}.safetensors"


def shard_entries(
    layout: ParallelLayout,
) -> dict[Rank, list[tuple[str, torch.dtype, tuple[int, ...]]]]:
    """Every rank file's ``(local_name, dtype, shard_shape)`` in write order, computed without data.

    Uses each kind's ``shard_shape``, so an invalid layout (e.g. ``tp`` not dividing a dimension)
    raises :class:`ParallelLayoutError` before anything is read or written.
    """
    missing = [n for n, s in layout.params.items() if s.dtype is None or s.shape is None]
    if missing:
        raise ParallelLayoutError(
            f"The layout lacks dtype/shape for {missing[:5]}; build it with layout_for(...) "
            "(or ParamSpec.completed) before saving."
        )
    out: dict[Rank, list[tuple[str, torch.dtype, tuple[int, ...]]]] = {
        r: [] for r in layout.ranks()
    }
    for name, places in placements(layout).items():
        spec = layout.params[name]
        assert spec.shape is not None and spec.dtype is not None
        shape = shard_shape(spec.kind, spec.shape, tp=layout.tp, name=name, **spec.meta)
        for stage, local in places:
            for tp_rank in range(layout.tp):
                out[(tp_rank, stage)].append((local, spec.dtype, shape))
    return out


def layout_vocab_padding(layout: ParallelLayout) -> VocabPadding | None:
    """The vocabulary padding of ``layout``'s ``vocab`` parameters at its TP size (None without any).

    Raises:
        ParallelLayoutError: two vocab parameters disagree on the vocabulary or its padding multiple.
    """
    found = {
        (int(spec.meta.get("vocab_size", spec.shape[0] if spec.shape else 0)),
         int(spec.meta.get("divisible_by", DEFAULT_DIVISIBLE_BY)))
        for spec in layout.params.values() if spec.kind == "vocab"
    }
    if not found:
        return None
    if len(found) > 1:
        raise ParallelLayoutError(
            f"The layout's vocab parameters disagree on (vocab_size, divisible_by): {sorted(found)}; one model has "
            "one vocabulary."
        )
    vocab, divisible_by = found.pop()
    return vocab_padding_for(vocab, tp=layout.tp, divisible_by=divisible_by)


def write_layout_json(directory: Path, layout: ParallelLayout) -> None:
    """Write ``layout.json`` into ``directory`` (with its ``vocab_padding`` record)."""
    document = layout.to_json()
    padding = layout_vocab_padding(layout)
    if padding is not None:
        document["vocab_padding"] = padding.to_json()
    text = json.dumps(document, indent=1) + "\n"
    (directory / LAYOUT_FILE).write_text(text, encoding="utf-8")


def save_layout(
    directory: str | os.PathLike[str],
    shards_by_rank: Mapping[Rank, Mapping[str, torch.Tensor]],
    layout: ParallelLayout,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``layout.json`` and one safetensors file per rank, atomically.

    Every rank's tensors are checked against the layout (names, dtypes, shard shapes) first.
    """
    entries = shard_entries(layout)
    if set(shards_by_rank) != set(entries):
        raise ParallelLayoutError(
            f"Shards are keyed by {sorted(shards_by_rank)} but tp={layout.tp}, pp={layout.pp} "
            f"needs {sorted(entries)}."
        )
    for rank, want in entries.items():
        have = shards_by_rank[rank]
        got = {(n, t.dtype, tuple(t.shape)) for n, t in have.items()}
        if got != set(want) or len(have) != len(want):
            diff = sorted(map(str, got ^ set(want)))[:5]
            raise ParallelLayoutError(
                f"Rank tp={rank[0]}, pp={rank[1]} does not match the layout: differing "
                f"(name, dtype, shape) entries {diff}."
            )
    with AtomicDirectory(directory, overwrite=overwrite) as tmp:
        for (tp_rank, pp_rank), want in entries.items():
            tensors = {n: shards_by_rank[(tp_rank, pp_rank)][n].contiguous() for n, _, _ in want}
            meta = {"format": "pt", "tp_rank": str(tp_rank), "pp_rank": str(pp_rank)}
            save_file(tensors, str(tmp / rank_file_name(tp_rank, pp_rank)), metadata=meta)
        write_layout_json(tmp, layout)
    log.info(
        "saved tp=%d pp=%d layout with %d parameters to %s",
        layout.tp,
        layout.pp,
        len(layout.params),
        directory,
    )
    return Path(directory)


def read_layout(directory: str | os.PathLike[str]) -> ParallelLayout:
    """Parse ``<directory>/layout.json`` (no tensors are read)."""
    path = Path(directory) / LAYOUT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path} is missing: {directory} is not a saved Megatron layout."
        ) from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from exc
    layout = ParallelLayout.from_json(data, source=str(path))
    if "vocab_padding" in data:  # absent in files written before the record existed: derived from the params
        recorded = VocabPadding.from_json(data["vocab_padding"], source=str(path))
        derived = layout_vocab_padding(layout)
        if recorded != derived:
            raise CheckpointError(
                f"{path} records vocab padding {recorded.to_json()} but its vocab parameters give "
                f"{derived.to_json() if derived else None}; the file is damaged or was edited by hand: re-save it "
                "(save_layout / mcore-compat convert)."
            )
    return layout


def check_rank_files(directory: str | os.PathLike[str], layout: ParallelLayout) -> None:
    """Check that ``directory`` has exactly the layout's rank files, each with the expected names."""
    directory = Path(directory)
    want = {rank_file_name(*rank) for rank in layout.ranks()}
    have = {p.name for p in directory.glob("tp*_pp*.safetensors")}
    if want != have:
        raise CheckpointError(
            f"{directory}: layout.json says tp={layout.tp}, pp={layout.pp}, but the rank files "
            f"differ: missing {sorted(want - have)}, unexpected {sorted(have - want)}."
        )
    names = expected_local_names(layout)
    for tp_rank, pp_rank in layout.ranks():
        path = directory / rank_file_name(tp_rank, pp_rank)
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
        if keys != set(names[pp_rank]):
            raise CheckpointError(
                f"{path} does not hold its stage's parameters: missing "
                f"{sorted(set(names[pp_rank]) - keys)[:5]}, unexpected {sorted(keys - set(names[pp_rank]))[:5]}."
            )


def load_layout(
    directory: str | os.PathLike[str], *, model_class: str | None = None,
) -> tuple[ParallelLayout, dict[Rank, dict[str, torch.Tensor]]]:
    """Read a saved layout: ``(layout, {(tp_rank, pp_rank): local state dict})``.

    ``model_class`` (``"gpt"``/``"hybrid"``) gives the layout and the local state dicts that model's names
    whatever the files hold (a GPT-layout checkpoint read for a ``HybridModel``, or the reverse); ``None``
    keeps the saved names (``layout.model_class``).
    """
    from bridge.hybrid import rename_for

    layout = read_layout(directory)
    check_rank_files(directory, layout)
    rename = rename_for(layout.model_class, model_class or layout.model_class)
    shards = {
        rank: {rename(k): v for k, v in load_file(str(Path(directory) / rank_file_name(*rank))).items()}
        for rank in layout.ranks()
    }
    return layout.relabeled(model_class or layout.model_class), shards


def load_full_state(
    directory: str | os.PathLike[str],
) -> tuple[ParallelLayout, dict[str, torch.Tensor]]:
    """Read a saved layout and merge it: ``(layout, full state with global names)``."""
    layout, shards = load_layout(directory)
    return layout, merge_state(shards, layout)
