"""``family:<name>`` / ``hybrid:<name>``: every tiny variant of a family, HF -> MCore ``GPTModel`` (``hybrid:``:
``HybridModel``, the provider's ``model_class="hybrid"``) -> logits vs HF -> export.

Per variant (see :mod:`harness.probes.tiny_models`): write the checkpoint, ``AutoBridge`` ->
provider -> ``TransformerConfig`` -> ``GPTModel`` on the device (TP = PP = 1), compare the logits with
HF's (``eager``), export back to HF and compare every tensor bit for bit. A variant passes with
``max_abs_diff`` within :data:`bridge.parity.PARITY_ATOL` (the bound of the bridge's own tests, mixture-of-experts
families included) and a bit-exact export. A :class:`~bridge.errors.BridgeError`
(the bridge refusing, release-aware, what this MCore cannot represent) or any other exception fails the
variant with its message. The family's row passes when every variant passes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from harness.probes.payload_common import FAILED, PASSED, Outcome, Row, describe_exception
from harness.probes.tiny_models import TinyVariant, family_variants, write_checkpoint

__all__ = ["convert_and_compare", "probe_family", "run_variant"]


def convert_and_compare(hf_path: Path, out_dir: Path, *, trust_remote_code: bool = False,
                        seq: int = 17, model_class: str = "auto") -> dict[str, Any]:
    """One round trip at TP = PP = 1 on the current device; metrics, or raises what the bridge raised."""
    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits
    from bridge.parity import PARITY_ATOL, compare_checkpoints, hf_reference_logits, logits_agreement, token_ids
    from bridge.runtime import reset_model_parallel

    reset_model_parallel()
    t0 = time.perf_counter()
    bridge = AutoBridge.from_hf_pretrained(hf_path, trust_remote_code=trust_remote_code or None)
    provider = bridge.to_megatron_provider()
    provider.tensor_model_parallel_size = 1
    provider.pipeline_model_parallel_size = 1
    provider.model_class = model_class
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    built = time.perf_counter() - t0
    vocab = bridge.hf_config.vocab_size
    ids = token_ids(vocab, seq=seq)
    ours = forward_logits(model, ids, vocab_size=vocab)
    ref = hf_reference_logits(hf_path, ids, device=ours.device, trust_remote_code=trust_remote_code)
    agreement = logits_agreement(ours, ref)
    bridge.save_hf_pretrained(model, out_dir, overwrite=True)
    comparison = compare_checkpoints(hf_path, out_dir)
    moe, atol = bool(provider.num_moe_experts), PARITY_ATOL
    reset_model_parallel()
    return {
        "config_class": type(model[0].config).__name__,
        "model_class": type(model[0]).__name__,
        "moe": moe,
        "atol": atol,
        "max_abs_diff": agreement.max_abs_diff,
        "cosine": agreement.cosine_similarity,
        "export_bit_exact": comparison.bit_exact,
        "export_tensors": comparison.compared,
        "export_summary": comparison.summary(),
        "parameters": sum(p.numel() for chunk in model for p in chunk.parameters()),
        "build_s": round(built, 3),
    }


def run_variant(variant: TinyVariant, workdir: Path, *, seed: int = 0,
                model_class: str = "auto") -> tuple[bool, str, dict[str, Any]]:
    """``(passed, one line saying why, metrics)`` of one variant converted in ``workdir``."""
    from bridge.errors import BridgeError

    src = workdir / f"{variant.family}-{variant.name.split('(')[0]}"
    try:
        write_checkpoint(variant, src, seed=seed)
    except Exception as e:  # noqa: BLE001 - the HF side cannot build it: the probe's own problem
        return False, f"{variant.name}: could not write the HF checkpoint: {describe_exception(e)}", {}
    try:
        m = convert_and_compare(src, workdir / f"{src.name}-export", trust_remote_code=variant.trust_remote_code,
                                model_class=model_class)
    except BridgeError as e:
        return False, f"{variant.name}: refused by the bridge: {type(e).__name__}: {e}", {}
    except Exception as e:  # noqa: BLE001 - a probe reports every failure as data
        return False, f"{variant.name}: {describe_exception(e)}", {}
    ok = m["max_abs_diff"] <= m["atol"] and m["export_bit_exact"]
    verdict = "ok" if ok else "MISMATCH"
    text = (f"{variant.name}: {verdict}, max_abs_diff {m['max_abs_diff']:.2e} (<= {m['atol']:.0e}), "
            f"cosine {m['cosine']:.7f}, export {m['export_summary']}")
    return ok, text, m


def probe_family(family: str, *, seed: int = 0, model_class: str = "auto", row: str | None = None) -> Outcome:
    """The ``family:<family>`` test (``hybrid:<family>`` with ``model_class="hybrid"``): one row, ``row`` or the
    family's name."""
    variants = family_variants(family)
    metrics: dict[str, Any] = {"variants": len(variants)}
    lines: list[str] = []
    passed = 0
    with tempfile.TemporaryDirectory(prefix=f"probe-{family}-") as tmp:
        for variant in variants:
            ok, text, m = run_variant(variant, Path(tmp), seed=seed, model_class=model_class)
            passed += ok
            lines.append(text)
            key = variant.name.split("(")[0]
            metrics[f"{key}.passed"] = ok  # which variants failed: compared with a partial static verdict's
            for name in ("max_abs_diff", "cosine", "export_bit_exact", "config_class", "model_class"):
                if name in m:
                    metrics[f"{key}.{name}"] = m[name]
    diffs = [v for k, v in metrics.items() if k.endswith(".max_abs_diff")]
    if diffs:
        metrics["max_abs_diff"] = max(diffs)
        metrics["cosine"] = min(v for k, v in metrics.items() if k.endswith(".cosine"))
        metrics["export_bit_exact"] = all(v for k, v in metrics.items() if k.endswith(".export_bit_exact"))
    metrics["variants_passed"] = passed
    status = PASSED if passed == len(variants) else FAILED
    head = f"{passed}/{len(variants)} variants pass"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return Outcome(rows={row or family: Row(status, f"{head} on {device}. " + " | ".join(lines), metrics)})
