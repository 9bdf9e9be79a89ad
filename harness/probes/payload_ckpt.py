"""``ckpt_compat:<family>``, run inside the READER release: load every grid writer's checkpoint, judge each cell.

Writer side (``python -m harness.probes.payload_ckpt write <family>[,...] --out DIR``, run under the writer
release by :mod:`harness.probes.ckpt_store`), per family: its first tiny variant as an HF checkpoint
(``DIR/<family>/hf``), imported with the bridge's ``torch_dist`` writer (``mc``), and ``writer.json`` saying
``written``, ``refused`` (the bridge cannot build the family on this release) or ``error``.

Reader side, per writer (:func:`harness.probes.ckpt_grid.writers_for`), against the HF model's logits:

* ``bridge``: ``load_megatron_model``'s path (located, validated, provider from the record, loaded);
* ``mcore``: a model built here, filled by plain ``dist_checkpointing.load`` and a strict ``load_state_dict``;
* ``hybrid_interop`` (0.19+, dense families, GPT-layout checkpoints): MCore's own ``gpt_checkpoint_interop``
  retargets a ``HybridModel``'s sharded state dict at the GPT checkpoint;
* ``hybrid_migrate`` (same cells): the HybridModel's own keys against the GPT checkpoint (a real layout
  difference: its first key), then ``migrate-ckpt --model-class hybrid`` and the bridge's load of the result.

A path's verdict (:data:`~harness.probes.ckpt_grid.CELL_VERDICTS`): ``loads`` (logits within
:data:`bridge.parity.PARITY_ATOL`), ``loads_with_warnings`` (MCore warned while loading, or ``_extra_state``
entries were absent / unexpected), ``logits_differ``, ``fails`` (with the first missing / unexpected key or
shape mismatch, :mod:`bridge.megatron_ckpt.keys`). The cell's verdict is the worse of ``bridge`` and ``mcore``.
A failing cell is retried after ``migrate-ckpt`` to this release (:mod:`bridge.megatron_ckpt.migrate`):
``loads_after_migrate`` when that loads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from harness.probes.ckpt_grid import CELL_VERDICTS, row_name, row_status, writers_for
from harness.probes.payload_common import MegatronWarnings, Outcome, Row, describe_exception

__all__ = ["judge", "main", "probe_ckpt_compat", "read_cell", "write_entry"]

try:  # DCP's planner failures (a key the model asks for that the checkpoint lacks) are BaseException
    from torch.distributed.checkpoint.api import CheckpointException as _DCPFailure
except ImportError:  # pragma: no cover - torch without distributed checkpointing
    _DCPFailure = Exception  # type: ignore[assignment,misc]
_FAILURES: tuple[type[BaseException], ...] = (Exception, _DCPFailure)
"""What a load path reports as its verdict instead of dying (torch's ``CheckpointException`` derives from
``BaseException``: uncaught, 0.19.2's KeyError for DeepSeek-V2's moved norm ended the whole probe)."""

_REFUSALS = ("ConfigError", "UnsupportedFeatureError", "UnsupportedModelError", "MappingError", "TrustRemoteCodeError")


def _brief(exc: BaseException) -> str:
    """:func:`describe_exception`, but DCP's ``CheckpointException`` (a rank's whole traceback as its message)
    shortened to the exception that ended the rank's plan (e.g. the ``KeyError`` naming the missing key)."""
    from harness.probes.runner import exception_reason

    text = describe_exception(exc)
    return (exception_reason(str(exc)) or text) if isinstance(exc, _DCPFailure) else text


def _refused(exc: BaseException) -> bool:
    return any(cls.__name__ in _REFUSALS for cls in type(exc).__mro__)


# --- writer ----------------------------------------------------------------------------------------

def write_entry(family: str, out: Path) -> dict[str, Any]:
    """Write ``out/hf`` and ``out/mc`` under the running release; the ``writer.json`` record."""
    from bridge import compat
    from harness.probes.tiny_models import family_variants, write_checkpoint

    started = time.perf_counter()
    record: dict[str, Any] = {"family": family, "mcore_version": str(compat.installed_version())}
    variant = family_variants(family)[0]
    record["variant"] = variant.name
    from harness.cache import default_cache_dir

    sentinels = default_cache_dir() / "ckpt_compat" / ".sentinels"  # outlives the staging directory (TinyGPT)
    sentinels.mkdir(parents=True, exist_ok=True)
    write_checkpoint(variant, out / "hf", seed=0, sentinel=sentinels / f"{record['mcore_version']}-{family}.sentinel")
    try:
        from bridge.auto_bridge import AutoBridge

        AutoBridge.import_ckpt(out / "hf", out / "mc", durable=False, offline=False,  # this release's writer
                               trust_remote_code=variant.trust_remote_code or None)
    except _FAILURES as exc:  # noqa: BLE001 - the writer's verdict is data
        record.update(status="refused" if _refused(exc) else "error", reason=describe_exception(exc))
    else:
        record.update(status="written", reason="")
    record["duration_s"] = round(time.perf_counter() - started, 3)
    return record


# --- reader ----------------------------------------------------------------------------------------

_ORDER = ("error", "fails", "logits_differ", "loads_with_warnings", "loads")


def judge(*verdicts: str) -> str:
    """The worst of several path verdicts."""
    return next(v for v in _ORDER if v in verdicts)


def _logits(chunks: list[Any], ids: Any, vocab: int) -> Any:
    from bridge.inference import forward_logits

    return forward_logits(chunks, ids, vocab_size=vocab)


def _loaded_verdict(logits: Any, ref: Any, notes: list[str]) -> dict[str, Any]:
    from bridge.parity import PARITY_ATOL, logits_agreement

    diff = logits_agreement(logits, ref).max_abs_diff
    if diff > PARITY_ATOL:
        return {"verdict": "logits_differ", "max_abs_diff": diff, "details": f"max |logits - HF| {diff:.2e} > "
                f"{PARITY_ATOL:.0e}" + (f"; {'; '.join(notes)}" if notes else "")}
    verdict = "loads_with_warnings" if notes else "loads"
    return {"verdict": verdict, "max_abs_diff": diff, "details": "; ".join(notes) or f"max |logits - HF| {diff:.2e}"}


def _warning_notes(caught: MegatronWarnings, extra: list[str]) -> list[str]:
    return [*extra, *(f"{w['category']}: {w['message'][:160]}" for w in caught.as_json())]


def _bridge_path(path: Path, ids: Any, ref: Any, vocab: int, trust: bool) -> dict[str, Any]:
    from bridge.auto_bridge import AutoBridge
    from bridge.megatron_ckpt.api import provider_for_checkpoint
    from bridge.megatron_ckpt.reader import load_into, open_checkpoint
    from bridge.runtime import reset_model_parallel
    from bridge.megatron_ckpt.keys import key_diff

    reset_model_parallel()
    try:
        dirs, record = open_checkpoint(path)
        _, provider = provider_for_checkpoint(dirs, record, open_bridge=AutoBridge.from_hf_pretrained,
                                              trust_remote_code=trust or None)
    except _FAILURES as exc:  # noqa: BLE001
        return {"verdict": "fails", "details": describe_exception(exc)}
    try:
        provider.finalize()
        chunks = provider.provide_distributed_model()
    except _FAILURES as exc:  # noqa: BLE001
        return {"verdict": "not_run" if _refused(exc) else "error",
                "details": f"the reader cannot build the model: {describe_exception(exc)}"}
    diff = key_diff(dirs.iteration_dir, {"model": chunks[0].sharded_state_dict()})
    with MegatronWarnings() as caught:
        try:
            load_into(dirs, chunks)
        except _FAILURES as exc:  # noqa: BLE001
            return {"verdict": "fails", "details": describe_exception(exc), "first_difference": diff.first()}
    out = _loaded_verdict(_logits(chunks, ids, vocab), ref, _warning_notes(caught, diff.extra_state_notes()))
    return {**out, "dense": not getattr(provider, "num_moe_experts", None),
            "model_class": (record or {}).get("model_class", "gpt")}


def _mcore_path(path: Path, ids: Any, ref: Any, vocab: int, trust: bool) -> dict[str, Any]:
    """A model built here from the checkpoint's HF config, filled by MCore's own loader, no bridge help."""
    from megatron.core import dist_checkpointing

    from bridge.auto_bridge import AutoBridge
    from bridge.megatron_ckpt.api import provider_for_checkpoint
    from bridge.megatron_ckpt.reader import open_checkpoint
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    dirs, record = open_checkpoint(path)
    _, provider = provider_for_checkpoint(dirs, record, open_bridge=AutoBridge.from_hf_pretrained,
                                          trust_remote_code=trust or None)
    provider.finalize()
    chunk = provider.provide_distributed_model()[0]
    with MegatronWarnings() as caught:
        try:
            loaded = dist_checkpointing.load({"model": chunk.sharded_state_dict()}, str(dirs.iteration_dir))
            chunk.load_state_dict(loaded["model"], strict=True)
        except _FAILURES as exc:  # noqa: BLE001
            return {"verdict": "fails", "details": _brief(exc)[:600]}
    return _loaded_verdict(_logits([chunk], ids, vocab), ref, _warning_notes(caught, []))


def _interop_path(path: Path, ids: Any, ref: Any, vocab: int, trust: bool) -> dict[str, Any]:
    """MCore's GPTModel -> HybridModel load-time translation, into the bridge's HybridModel of the family."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.gpt_checkpoint_interop import (
        gpt_compatible_layer_maps, retarget_sharded_state_dict_to_gpt_checkpoint,
    )

    from bridge.auto_bridge import AutoBridge
    from bridge.megatron_ckpt.api import provider_for_checkpoint
    from bridge.megatron_ckpt.reader import open_checkpoint
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    dirs, record = open_checkpoint(path)
    _, provider = provider_for_checkpoint(dirs, record, open_bridge=AutoBridge.from_hf_pretrained,
                                          trust_remote_code=trust or None)
    provider.model_class = "hybrid"
    try:
        provider.finalize()
        chunk = provider.provide_distributed_model()[0]
    except _FAILURES as exc:  # noqa: BLE001
        return {"verdict": "not_run", "details": f"no HybridModel of this family here: {describe_exception(exc)}"}
    with MegatronWarnings() as caught:
        try:
            sharded = chunk.sharded_state_dict()
            retarget_sharded_state_dict_to_gpt_checkpoint(sharded, gpt_compatible_layer_maps(chunk.hybrid_layer_pattern))
            loaded = dist_checkpointing.load({"model": sharded}, str(dirs.iteration_dir))
            chunk.load_state_dict(loaded["model"], strict=True)
        except _FAILURES as exc:  # noqa: BLE001
            return {"verdict": "fails", "details": _brief(exc)[:600]}
    return _loaded_verdict(_logits([chunk], ids, vocab), ref, _warning_notes(caught, []))


def _hybrid_migrate_path(path: Path, ids: Any, ref: Any, vocab: int, trust: bool, workdir: Path) -> dict[str, Any]:
    """A GPT-layout checkpoint into the bridge's HybridModel without MCore's interop (the layouts differ), then
    after ``migrate-ckpt --model-class hybrid``: ``loads_after_migrate`` when the migrated one loads."""
    from bridge import compat
    from bridge.auto_bridge import AutoBridge
    from bridge.megatron_ckpt.api import provider_for_checkpoint
    from bridge.megatron_ckpt.keys import key_diff
    from bridge.megatron_ckpt.migrate import migrate_checkpoint
    from bridge.megatron_ckpt.reader import open_checkpoint
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    dirs, record = open_checkpoint(path)
    _, provider = provider_for_checkpoint(dirs, record, open_bridge=AutoBridge.from_hf_pretrained,
                                          trust_remote_code=trust or None)
    provider.model_class = "hybrid"
    provider.finalize()
    native = key_diff(dirs.iteration_dir, {"model": provider.provide_distributed_model()[0].sharded_state_dict()})
    if native.tensors_only().empty:
        return {"verdict": "loads", "details": "the HybridModel asks for the GPT checkpoint's own keys"}
    target = workdir / "hybrid"
    migrate_checkpoint(path, target, to_release=str(compat.installed_version()), model_class="hybrid", durable=False,
                       trust_remote_code=trust or None)
    after = _bridge_path(target, ids, ref, vocab, trust)
    verdict = "loads_after_migrate" if after["verdict"] in ("loads", "loads_with_warnings") else after["verdict"]
    return {"verdict": verdict, "max_abs_diff": after.get("max_abs_diff"), "first_difference": native.first(),
            "details": f"native HybridModel load: {native.first()}; after migrate-ckpt --model-class hybrid: "
                       f"{after['verdict']} ({after.get('details', '')})"}


def _guarded(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    try:
        return fn(*args)
    except _FAILURES as exc:  # noqa: BLE001 - the probe's own failure, told apart from the cell's
        return {"verdict": "error", "details": describe_exception(exc)}


def _migrated(path: Path, trust: bool, workdir: Path, ids: Any, ref: Any, vocab: int) -> dict[str, Any]:
    from bridge import compat
    from bridge.megatron_ckpt.migrate import migrate_checkpoint

    target = workdir / "migrated"
    try:
        migrate_checkpoint(path, target, to_release=str(compat.installed_version()), durable=False,
                           trust_remote_code=trust or None)
    except _FAILURES as exc:  # noqa: BLE001
        return {"verdict": "fails", "details": f"migrate-ckpt: {describe_exception(exc)}"}
    return _guarded(_bridge_path, target, ids, ref, vocab, trust)


def read_cell(written: Any, *, interop: bool, workdir: Path) -> dict[str, Any]:
    """The verdict of one (writer, this release) cell of a :class:`~harness.probes.ckpt_store.Written` entry."""
    from bridge.parity import hf_reference_logits, token_ids
    from harness.probes.tiny_models import REMOTE_CODE_FAMILIES

    if written.status != "written":
        verdict = "not_run" if written.status == "refused" else "error"
        return {"verdict": verdict, "details": f"megatron-core {written.writer} could not write it: {written.reason}"}
    trust = written.family in REMOTE_CODE_FAMILIES
    vocab = json.loads((written.hf_dir / "config.json").read_text())["vocab_size"]
    ids = token_ids(vocab, seq=17)
    ref = hf_reference_logits(written.hf_dir, ids, trust_remote_code=trust)
    bridge = _guarded(_bridge_path, written.checkpoint, ids, ref, vocab, trust)
    if bridge["verdict"] == "not_run":
        return {**bridge, "bridge": bridge}
    mcore = _guarded(_mcore_path, written.checkpoint, ids, ref, vocab, trust)
    cell: dict[str, Any] = {"verdict": judge(bridge["verdict"], mcore["verdict"]), "bridge": bridge, "mcore": mcore}
    worst = bridge if bridge["verdict"] == cell["verdict"] else mcore
    cell["details"] = worst.get("details", "")
    if worst.get("first_difference"):
        cell["first_difference"] = worst["first_difference"]
    if cell["verdict"] == "fails":
        cell["migrated"] = _migrated(written.checkpoint, trust, workdir, ids, ref, vocab)
        if cell["migrated"]["verdict"] in ("loads", "loads_with_warnings"):
            cell["verdict"] = "loads_after_migrate"
    if interop and bridge.get("dense") and bridge.get("model_class") == "gpt":
        cell["hybrid_interop"] = _guarded(_interop_path, written.checkpoint, ids, ref, vocab, trust)
        cell["hybrid_migrate"] = _guarded(_hybrid_migrate_path, written.checkpoint, ids, ref, vocab, trust, workdir)
    return cell


def probe_ckpt_compat(family: str) -> Outcome:
    """The ``ckpt_compat:<family>`` test at this (reader) release: one row per grid writer."""
    from bridge import compat
    from harness.probes.catalog import family_names
    from harness.probes.ckpt_store import ensure_written

    reader = str(compat.installed_version())
    interop = compat.has_feature("gpt_checkpoint_interop")
    rows: dict[str, Row] = {}
    for writer in writers_for(family, reader):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"ckpt-{family}-") as tmp:
            try:
                written = ensure_written(family, writer, batch=family_names())  # each writer runs once for all
                cell = read_cell(written, interop=interop, workdir=Path(tmp))
            except _FAILURES as exc:  # noqa: BLE001 - one cell's trouble never hides the others
                cell = {"verdict": "error", "details": describe_exception(exc)}
        assert cell["verdict"] in CELL_VERDICTS, cell
        metrics = {"verdict": cell["verdict"], "cell": json.dumps(cell, default=str),
                   "duration_s": round(time.perf_counter() - started, 3)}
        rows[row_name(family, writer)] = Row(row_status(cell["verdict"]), cell.get("details", ""), metrics)
    return Outcome(rows, notes=(f"ckpt_compat {family}: {len(rows)} writer(s) read by {reader}",))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.probes.payload_ckpt", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("write",))
    ap.add_argument("families", help="comma-separated families, each written into OUT/<family>/")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TQDM_DISABLE", "1")
    for family in args.families.split(","):
        from bridge.runtime import reset_model_parallel

        reset_model_parallel()
        try:
            record = write_entry(family, args.out / family)
        except _FAILURES as exc:  # noqa: BLE001 - the HF side could not be written: this family's record says so
            record = {"family": family, "status": "error", "reason": f"the HF checkpoint: {describe_exception(exc)}"}
        (args.out / family).mkdir(parents=True, exist_ok=True)
        (args.out / family / "writer.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
