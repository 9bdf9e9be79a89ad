"""``properties``: a bounded Hypothesis run of random small Llama architectures through the real MCore.

Each example (layers, hidden size, heads, query groups, head size, FFN size, vocabulary, tied or not)
is written as a perturbed HF checkpoint, loaded into a ``GPTModel`` by the bridge, compared with HF's
logits and exported back; the property holds when the logits agree within
:data:`bridge.parity.PARITY_ATOL` and the export is bit-exact. The run is
deterministic (``derandomize``), has no example database and does not shrink, so its time is bounded by
``max_examples``. Without Hypothesis installed the row is skipped.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.probes.payload_common import FAILED, PASSED, SKIPPED, Outcome, Row, describe_exception
from harness.probes.payload_families import convert_and_compare
from harness.probes.tiny_models import llama_checkpoint

__all__ = ["LlamaArchitecture", "llama_architectures", "probe_properties"]


@dataclass(frozen=True)
class LlamaArchitecture:
    """The HF ``LlamaConfig`` fields a property example varies."""

    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool

    def config(self) -> dict[str, Any]:
        return {**asdict(self), "max_position_embeddings": 64, "rms_norm_eps": 1e-6}


def llama_architectures(*, max_layers: int = 3, max_heads: int = 4, max_vocab: int = 160):
    """Small Llama architectures: MHA, GQA or MQA, head size apart from hidden/heads, tied or not."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: st.DrawFn) -> LlamaArchitecture:
        heads = draw(st.sampled_from([h for h in (1, 2, 4, 8) if h <= max_heads]))
        return LlamaArchitecture(
            num_hidden_layers=draw(st.integers(1, max_layers)),
            hidden_size=draw(st.sampled_from((16, 32, 48))),
            num_attention_heads=heads,
            num_key_value_heads=draw(st.sampled_from([g for g in (1, 2, 4, 8) if heads % g == 0])),
            head_dim=draw(st.sampled_from((8, 16))),
            intermediate_size=draw(st.sampled_from((16, 24, 64))),
            vocab_size=draw(st.integers(2, max_vocab)),
            tie_word_embeddings=draw(st.booleans()),
        )

    return build()


def probe_properties(*, max_examples: int = 10) -> Outcome:
    """One ``llama`` row: every example converts within tolerance and exports bit-exact."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings
    except ImportError:
        why = "hypothesis is not installed in this environment"
        return Outcome({"llama": Row(SKIPPED, why)}, notes=(why,))
    from bridge.parity import PARITY_ATOL

    seen: list[dict[str, Any]] = []
    worst = {"max_abs_diff": 0.0, "cosine": 1.0}

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))
    @given(arch=llama_architectures())
    def holds(arch: LlamaArchitecture) -> None:
        seen.append(asdict(arch))
        with tempfile.TemporaryDirectory(prefix="probe-property-") as tmp:
            src = llama_checkpoint(Path(tmp) / "hf", seed=len(seen), **arch.config())
            m = convert_and_compare(src, Path(tmp) / "export")
        worst["max_abs_diff"] = max(worst["max_abs_diff"], m["max_abs_diff"])
        worst["cosine"] = min(worst["cosine"], m["cosine"])
        assert m["max_abs_diff"] <= PARITY_ATOL, f"max_abs_diff {m['max_abs_diff']:.2e} > {PARITY_ATOL:.0e}"
        assert m["export_bit_exact"], f"export not bit-exact: {m['export_summary']}"

    metrics: dict[str, Any] = {"max_examples": max_examples}
    try:
        holds()
    except Exception as e:  # noqa: BLE001 - the falsifying example is the finding
        metrics.update(examples=len(seen), **worst)
        example = seen[-1] if seen else {}
        return Outcome({"llama": Row(FAILED, f"falsified by {example}: {describe_exception(e)}", metrics)})
    metrics.update(examples=len(seen), **worst)
    return Outcome({"llama": Row(PASSED, f"{len(seen)} random Llama architectures: logits within "
                                         f"{PARITY_ATOL:.0e} (worst {worst['max_abs_diff']:.2e}), exports "
                                         "bit-exact", metrics)})
