"""Parity checks of a conversion: Megatron logits against HF's, and an exported checkpoint against its source.

Used by ``scripts/parallel_parity.py`` (torchrun, any TP x PP) and by the harness's dynamic probes:

* :func:`hf_reference_logits` runs the HF model of a checkpoint directory (``eager`` attention);
* :func:`logits_agreement` gives the largest absolute difference and the cosine similarity;
* :func:`compare_checkpoints` compares two checkpoint directories tensor by tensor (names, dtypes,
  bits);
* :func:`run_layout_parity` builds a checkpoint at a TP x PP layout in an initialised process group,
  compares its logits with HF on the last pipeline stage and exports it back (the whole round trip).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bridge._logging import get_logger

__all__ = [
    "PARITY_ATOL",
    "CheckpointComparison",
    "LayoutParity",
    "LogitsAgreement",
    "compare_checkpoints",
    "hf_reference_logits",
    "logits_agreement",
    "run_layout_parity",
    "token_ids",
]

log = get_logger("parity")

PARITY_ATOL = 1e-5
"""The one bound on ``max |logit diff|`` between a converted model and HF (fp32, HF ``eager`` attention), for
every family, mixture-of-experts ones included, in the bridge's tests and in the harness's probes (largest
measured in the committed probe results: 2.6e-6, DeepSeek-V3 on 0.16.1)."""


@dataclass(frozen=True)
class LogitsAgreement:
    """How close two logit tensors are (both taken in float32)."""

    max_abs_diff: float
    cosine_similarity: float

    def within(self, atol: float) -> bool:
        return self.max_abs_diff <= atol


@dataclass(frozen=True)
class CheckpointComparison:
    """Tensor-by-tensor comparison of two checkpoint directories."""

    compared: int
    missing: tuple[str, ...] = ()  # in the source, not in the other
    unexpected: tuple[str, ...] = ()  # in the other, not in the source
    different: tuple[str, ...] = ()  # same name, other dtype, shape or bits

    @property
    def bit_exact(self) -> bool:
        return not (self.missing or self.unexpected or self.different)

    def summary(self, limit: int = 5) -> str:
        if self.bit_exact:
            return f"{self.compared} tensors bit-exact"
        parts = []
        for label, names in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("different", self.different)):
            if names:
                shown = ", ".join(names[:limit]) + (f" (+{len(names) - limit})" if len(names) > limit else "")
                parts.append(f"{len(names)} {label}: {shown}")
        return "; ".join(parts)


def token_ids(vocab_size: int, *, batch: int = 2, seq: int = 16, seed: int = 0) -> torch.Tensor:
    """Deterministic random token ids ``[batch, seq]``."""
    return torch.randint(0, vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_reference_logits(path: str | Path, ids: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu", trust_remote_code: bool = False) -> torch.Tensor:
    """Float32 logits of the HF model saved at ``path`` (eager attention) for ``ids``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, attn_implementation="eager", trust_remote_code=trust_remote_code
    ).to(device).eval()
    return model(ids.to(device)).logits.float()


def logits_agreement(ours: torch.Tensor, reference: torch.Tensor) -> LogitsAgreement:
    """Largest |ours - reference| and the cosine similarity of the flattened tensors."""
    if ours.shape != reference.shape:
        raise ValueError(f"expected logits of shape {tuple(reference.shape)}, found {tuple(ours.shape)}")
    a, b = ours.float(), reference.float().to(ours.device)
    return LogitsAgreement(
        max_abs_diff=(a - b).abs().max().item(),
        cosine_similarity=torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item(),
    )


def _all_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def compare_checkpoints(source: str | Path, other: str | Path) -> CheckpointComparison:
    """Every tensor of ``source`` against ``other``: same names, and each ``torch.equal`` with the same dtype."""
    x, y = _all_tensors(Path(source)), _all_tensors(Path(other))
    both = sorted(set(x) & set(y))
    different = tuple(n for n in both if x[n].dtype != y[n].dtype or x[n].shape != y[n].shape
                      or not torch.equal(x[n], y[n]))
    return CheckpointComparison(compared=len(both), missing=tuple(sorted(set(x) - set(y))),
                                unexpected=tuple(sorted(set(y) - set(x))), different=different)


@dataclass(frozen=True)
class LayoutParity:
    """What one rank found in :func:`run_layout_parity`; ``agreement`` only on the last stage."""

    rank: int
    agreement: LogitsAgreement | None
    comparison: CheckpointComparison | None  # global rank 0 only
    seconds: dict[str, float] = field(default_factory=dict)
    model_class: str = ""  # the MCore class built: GPTModel or HybridModel


def run_layout_parity(hf_path: str | Path, out_dir: str | Path, *, tp: int, pp: int, ep: int = 1,
                      dtype: torch.dtype = torch.float32, seq: int = 16,
                      trust_remote_code: bool | None = None, model_class: str = "auto",
                      first_stage_layers: int | None = None, vpp: int | None = None) -> LayoutParity:
    """Load ``hf_path`` at TP x PP (x EP for MoE models; every rank of the process group calls this), compare the logits with
    HF on the last stage, export to ``out_dir`` from global rank 0 and compare it with the source there.

    The process group must exist (``torchrun`` or an explicit ``init_process_group``); MCore's model
    parallel groups are made here and left in place.
    """
    from bridge.auto_bridge import AutoBridge
    from bridge.inference import forward_logits

    t0 = time.perf_counter()
    bridge = AutoBridge.from_hf_pretrained(hf_path, trust_remote_code=trust_remote_code)
    provider = bridge.to_megatron_provider()
    provider.tensor_model_parallel_size = tp
    provider.pipeline_model_parallel_size = pp
    provider.expert_model_parallel_size = ep
    provider.model_class = model_class
    provider.num_layers_in_first_pipeline_stage = first_stage_layers
    if vpp is not None:  # a virtual pipeline: vpp chunks per rank
        provider.virtual_pipeline_model_parallel_size = vpp
    provider.params_dtype = dtype
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    seconds = {"build_and_load": time.perf_counter() - t0}
    vocab = bridge.hf_config.vocab_size
    ids = token_ids(vocab, seq=seq)
    logits = forward_logits(model, ids, vocab_size=vocab)
    agreement = None
    if logits is not None:  # last pipeline stage
        ref = hf_reference_logits(hf_path, ids, dtype=dtype, device=logits.device,
                                  trust_remote_code=bool(trust_remote_code))
        agreement = logits_agreement(logits, ref)
    t1 = time.perf_counter()
    bridge.save_hf_pretrained(model, out_dir, overwrite=True)
    seconds["export"] = time.perf_counter() - t1
    rank = dist.get_rank() if dist.is_initialized() else 0
    comparison = compare_checkpoints(hf_path, out_dir) if rank == 0 else None
    log.debug("rank %d: TP=%d PP=%d agreement=%s", rank, tp, pp, agreement)
    return LayoutParity(rank=rank, agreement=agreement, comparison=comparison, seconds=seconds,
                        model_class=type(model[0]).__name__)

