"""Run inside a release's environment (0.18+): torch_dist checkpoints in both parameter layouts, one process.

    PYTHONPATH=<release paths>:<repo> python -m tests.helpers.hybrid_ckpt_runs --families llama,deepseek_v3 \
        --out report.json [--cli]

For each family's first tiny variant:

* ``hybrid``: ``import_ckpt(model_class="hybrid")`` -> ``load_checkpoint_model`` (the writer's class) -> logits
  vs HF -> ``export_ckpt`` compared with the source (bit-exact);
* ``gpt_into_hybrid``: ``import_ckpt(model_class="gpt")`` -> ``load_checkpoint_model(model_class="hybrid")`` and
  ``export_ckpt(model_class="hybrid")``: the same checks (or the refusal's words where this release cannot);
* ``hybrid_into_gpt``: the Hybrid checkpoint loaded as GPTModel, which must be refused (the words recorded).

``--cli`` adds one ``mcore-compat import-ckpt --model-class hybrid`` / ``export-ckpt`` round trip of the first
family. Writes ``{"mcore_version", "rows": [...], "cli": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path


def _logits_diff(model: list, src: Path, vocab: int, trust: bool) -> float:
    from bridge.inference import forward_logits
    from bridge.parity import hf_reference_logits, logits_agreement, token_ids

    ids = token_ids(vocab, seq=17)
    ours = forward_logits(model, ids, vocab_size=vocab)
    ref = hf_reference_logits(src, ids, device=ours.device, trust_remote_code=trust)
    return logits_agreement(ours, ref).max_abs_diff


def _load_and_export(mc: Path, src: Path, out: Path, *, model_class: str | None, trust: bool) -> dict:
    from bridge.auto_bridge import AutoBridge
    from bridge.errors import BridgeError
    from bridge.megatron_ckpt import export_ckpt, load_checkpoint_model
    from bridge.parity import compare_checkpoints
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    try:
        loaded = load_checkpoint_model(mc, open_bridge=AutoBridge.from_hf_pretrained, model_class=model_class,
                                       trust_remote_code=trust or None)
    except BridgeError as exc:
        return {"refused": f"{type(exc).__name__}: {exc}"}
    row = {"model_class": type(loaded.model[0]).__name__,
           "max_abs_diff": _logits_diff(loaded.model, src, loaded.bridge.hf_config.vocab_size, trust)}
    reset_model_parallel()
    exported = export_ckpt(mc, out, open_bridge=AutoBridge.from_hf_pretrained, model_class=model_class,
                           trust_remote_code=trust or None)
    comparison = compare_checkpoints(src, exported)
    return {**row, "export_bit_exact": comparison.bit_exact,
            "export_mismatches": [*comparison.missing, *comparison.unexpected, *comparison.different][:10]}


def _record(mc: Path) -> dict:
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.core import CheckpointingException

    record = json.loads((mc / "mcore_compat.json").read_text())
    try:  # MCore's own reader: 0.19's reads the common state wherever it is
        args = dist_checkpointing.load_common_state_dict(str(mc / "iter_0000000"))["args"]
    except CheckpointingException:  # 0.17/0.18's wants common.pt, which they no longer write: the bridge's way
        from bridge.megatron_ckpt.layout import locate
        from bridge.megatron_ckpt.reader import load_common

        args = load_common(locate(mc))["args"]
    return {"record_model_class": record["model_class"], "hybrid_layer_pattern": args.hybrid_layer_pattern,
            "args_num_layers": args.num_layers,
            "stacked_layers": any(re.match(r"decoder\.layers\.[a-z_]", k) for k in record["params"])}


def run_family(family: str, tmp: Path) -> dict:
    from bridge.auto_bridge import AutoBridge
    from bridge.runtime import reset_model_parallel
    from harness.probes.tiny_models import family_variants, write_checkpoint

    variant = family_variants(family)[0]
    trust = bool(variant.trust_remote_code)
    src = write_checkpoint(variant, tmp / family / "hf", seed=0)
    out: dict = {"family": family}
    for layout in ("hybrid", "gpt"):
        reset_model_parallel()
        AutoBridge.import_ckpt(src, tmp / family / layout, model_class=layout, trust_remote_code=trust or None,
                               offline=False)  # MCore's own writer of this layout
        out[f"{layout}_checkpoint"] = _record(tmp / family / layout)
    out["hybrid"] = _load_and_export(tmp / family / "hybrid", src, tmp / family / "back-hybrid", model_class=None,
                                     trust=trust)
    out["gpt_into_hybrid"] = _load_and_export(tmp / family / "gpt", src, tmp / family / "back-gpt",
                                              model_class="hybrid", trust=trust)
    out["hybrid_into_gpt"] = _load_and_export(tmp / family / "hybrid", src, tmp / family / "back-refused",
                                              model_class="gpt", trust=trust)
    return out


def run_cli(family: str, tmp: Path) -> dict:
    from bridge.parity import compare_checkpoints
    from bridge.runtime import reset_model_parallel
    from harness.cli import main as cli
    from harness.probes.tiny_models import family_variants, write_checkpoint

    src = write_checkpoint(family_variants(family)[0], tmp / "cli" / "hf", seed=0)
    reset_model_parallel()
    rc_import = cli(["import-ckpt", str(src), str(tmp / "cli" / "mc"), "--model-class", "hybrid", "--no-progress"])
    reset_model_parallel()
    rc_export = cli(["export-ckpt", str(tmp / "cli" / "mc"), str(tmp / "cli" / "back"), "--no-progress"])
    record = json.loads((tmp / "cli" / "mc" / "mcore_compat.json").read_text())
    return {"rc": [rc_import, rc_export], "record_model_class": record["model_class"],
            "export_bit_exact": compare_checkpoints(src, tmp / "cli" / "back").bit_exact}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--families", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cli", action="store_true")
    args = ap.parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import megatron.core

    families = args.families.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        report = {"mcore_version": megatron.core.__version__,
                  "rows": [run_family(f, Path(tmp)) for f in families]}
        if args.cli:
            report["cli"] = run_cli(families[0], Path(tmp))
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
