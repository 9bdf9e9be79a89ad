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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-classes", default="auto", help="comma-separated: auto, gpt, hybrid")
    ap.add_argument("--families", required=True)
    ap.add_argument("--out", type=Path, required=True)
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
