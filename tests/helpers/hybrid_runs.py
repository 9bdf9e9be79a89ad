"""Run inside a release's environment: each family's tiny variants through the bridge on one model class.

    PYTHONPATH=<release paths>:<repo> python -m tests.helpers.hybrid_runs --model-classes auto,hybrid \
        --families llama,qwen3 --out report.json

Writes ``{"mcore_version", "deprecation_notices", "mcore_banners", "variants": [{requested, family, variant,
passed, text, model_class, max_abs_diff, export_bit_exact}, ...]}``: the probe's own round trip
(:func:`harness.probes.payload_families.run_variant`, TP = PP = 1), one process for all families so that
MCore is imported once. The two counters are the log records of our deprecation notice and of MCore's
GPTModel banner that reached the root logger.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.ours = 0
        self.banners = 0

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        self.ours += record.name == "bridge.hybrid" and 'model_class="hybrid"' in msg
        self.banners += msg.startswith("GPTModel IS DEPRECATED")


def saved_layout_into_hybrid(family: str, tmp: Path) -> dict:
    """A GPT-layout saved checkpoint (``convert_checkpoint``) read into a live HybridModel; logits vs HF."""
    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits
    from bridge.parallel.layout_io import load_layout
    from bridge.parity import hf_reference_logits, logits_agreement, token_ids
    from bridge.runtime import reset_model_parallel
    from bridge.streaming import convert_checkpoint
    from harness.probes.tiny_models import family_variants, write_checkpoint

    variant = family_variants(family)[0]
    src = tmp / family
    write_checkpoint(variant, src, seed=0)
    trust = variant.trust_remote_code or None
    saved = convert_checkpoint(src, tmp / f"{family}-mcore", progress=False, trust_remote_code=trust)
    reset_model_parallel()
    bridge = AutoBridge.from_hf_pretrained(src, trust_remote_code=trust)
    provider = bridge.to_megatron_provider(load_weights=False)
    provider.model_class = "hybrid"
    provider.finalize()
    model = provider.provide_distributed_model()
    layout, shards = load_layout(saved.path, model_class="hybrid")
    result = model[0].load_state_dict(shards[(0, 0)], strict=False)
    ids = token_ids(bridge.hf_config.vocab_size, seq=17)
    ours = forward_logits(model, ids, vocab_size=bridge.hf_config.vocab_size)
    ref = hf_reference_logits(src, ids, device=ours.device, trust_remote_code=bool(trust))
    return {"family": family, "saved_model_class": read_class(saved.path), "model_class": type(model[0]).__name__,
            "missing": sorted(k for k in result.missing_keys if not k.endswith("_extra_state")),
            "unexpected": sorted(result.unexpected_keys), "max_abs_diff": logits_agreement(ours, ref).max_abs_diff}


def read_class(path: Path) -> str:
    return json.loads((path / "layout.json").read_text())["model_class"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-classes", default="auto", help="comma-separated: auto, gpt, hybrid")
    ap.add_argument("--families", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--saved-layout", action="store_true",
                    help="instead: convert each family's first variant to a GPT-layout saved checkpoint and read it "
                         "into a HybridModel (load_layout(model_class='hybrid') + load_state_dict), logits vs HF")
    args = ap.parse_args(argv)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TQDM_DISABLE", "1")
    counter = _Count()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().addHandler(counter)

    import megatron.core

    from harness.probes.payload_families import run_variant
    from harness.probes.tiny_models import family_variants

    rows = []
    if args.saved_layout:
        with tempfile.TemporaryDirectory(prefix="hybrid-saved-") as tmp:
            rows = [saved_layout_into_hybrid(family, Path(tmp)) for family in args.families.split(",")]
        args.out.write_text(json.dumps({"mcore_version": megatron.core.__version__, "saved": rows}, indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="hybrid-runs-") as tmp:
        for requested in args.model_classes.split(","):
            for family in args.families.split(","):
                for variant in family_variants(family):
                    ok, text, m = run_variant(variant, Path(tmp), model_class=requested)
                    rows.append({"requested": requested, "family": family, "variant": variant.name, "passed": ok,
                                 "text": text, **{k: m.get(k) for k in ("model_class", "max_abs_diff",
                                                                       "export_bit_exact")}})
    args.out.write_text(json.dumps({"mcore_version": megatron.core.__version__, "deprecation_notices": counter.ours,
                                    "mcore_banners": counter.banners, "variants": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
