"""Known, explained disagreements between the static verdict and the dynamic probes: ONE data table.

A static verdict says whether a revision *has* what a row needs; a probe says whether the bridge
*works* there. They may differ on purpose (the bridge refuses something the revision has, because it
would be silently wrong), or because of the environment the probe ran in. Each such case is one
:class:`Explanation` in :data:`EXPLANATIONS`; :func:`explain` finds the one that covers a cell. A
disagreement no entry covers is reported as ``disagree`` (something to look at).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.versions import version_key

__all__ = ["EXPLANATIONS", "Explanation", "explain"]

WORKS = ("supported", "renamed")
"""Static verdicts that predict the probe passes."""


@dataclass(frozen=True)
class Explanation:
    """Why a static verdict and a probe result disagree, and where.

    Attributes:
        rows: matrix rows it covers (``"*"``: every row).
        reason: the explanation shown in the reports.
        static: static statuses it covers.
        dynamic: dynamic statuses it covers.
        since / before: the release range it covers (``since`` inclusive, ``before`` exclusive;
            None: open). Revisions of unknown version are covered only by open ranges.
        platforms: ``cpu`` / ``gpu``.
        details: a regular expression the dynamic details must match (None: any).
        outside_python_range: when set, covers only cells whose revision is (True) or is not
            (False) outside its declared Python range.
    """

    rows: tuple[str, ...]
    reason: str
    static: tuple[str, ...] = WORKS
    dynamic: tuple[str, ...] = ("failed",)
    since: str | None = None
    before: str | None = None
    platforms: tuple[str, ...] = ("cpu", "gpu")
    details: str | None = None
    outside_python_range: bool | None = None

    def covers(self, *, row: str, version: str | None, static: str, dynamic: str, platform: str,
               details: str = "", outside_python_range: bool = False) -> bool:
        if "*" not in self.rows and row not in self.rows:
            return False
        if static not in self.static or dynamic not in self.dynamic or platform not in self.platforms:
            return False
        if self.outside_python_range is not None and self.outside_python_range != outside_python_range:
            return False
        if self.details is not None and not re.search(self.details, details or "", re.IGNORECASE):
            return False
        if self.since is None and self.before is None:
            return True
        if not version:
            return False
        key = version_key(version)
        return (self.since is None or key >= version_key(self.since)) and (
            self.before is None or key < version_key(self.before))


EXPLANATIONS: tuple[Explanation, ...] = (
    Explanation(
        rows=("mistral", "mixtral", "qwen3_moe", "phi3"), before="0.15.0", details=r"sliding|window",
        reason="the bridge refuses sliding-window attention (Mistral and Mixtral; Qwen3-MoE with "
               "use_sliding_window; Phi-3-mini's sliding_window) on "
               "purpose before megatron-core 0.15: the local DotProductAttention's softmax ignores "
               "window_size there (bridge.compat feature local_sliding_window), so the converted model would "
               "silently attend to the whole context; the window_size field exists, hence the static "
               "'supported'",
    ),
    Explanation(
        rows=("gemma",), details=r"gemma ?2|soft-?cap|post[-_ ]?(attention|feedforward|mlp)",
        reason="probes of a bridge older than the gemma2 family (issue 18): Gemma 2 checkpoints were refused "
               "under the gemma family, whose local GPT layer has neither attention/final logit soft-capping "
               "nor post-attention / post-MLP norms; the static row checks Gemma (v1) only. Gemma 2 now has "
               "its own family with a custom layer spec",
    ),
    Explanation(
        rows=("deepseek_v3",), since="0.19.0", details=r"q_lora_rank=None",
        reason="probes of a bridge older than issue 16's fix (d12368a, which maps this shape by turning "
               "qk_layernorm off and fusing the KV norm) refused DeepSeek-V3 checkpoints without a query LoRA "
               "(q_lora_rank=None) on megatron-core 0.19+: MLA there builds linear_q_proj as a fused norm+linear "
               "whenever qk_layernorm is on, normalising the query input where HF's q_proj does not "
               "(bridge.compat feature mla_plain_q_proj); checkpoints with q_lora_rank set pass, and the "
               "static row checks only that the MLA fields and classes exist",
    ),
    Explanation(
        rows=("te_extensions",), before="0.13.0", details=r"No module named 'transformer_engine'",
        reason="megatron.core.extensions.transformer_engine exists (hence the static 'supported') but imports "
               "transformer_engine without a guard before megatron-core 0.13, and neither this CPU machine "
               "nor the lent GPUs have Transformer Engine; from 0.13 the module imports without it",
    ),
    Explanation(
        rows=("ernie4_5_moe",), before="0.16.0", details=r"no router slot",
        reason="the bridge refuses Ernie-4.5-MoE on purpose where the MoE layer spec has no router slot "
               "(bridge.compat feature moe_router_submodule; 0.12.0 lacks it, 0.16.1 has it): its routing "
               "(softmax scores plus an expert bias for the choice) needs the bridge's own router there, and "
               "MCore's TopKRouter would route differently from HF; the fields it uses exist, hence the "
               "static 'supported'",
    ),
    Explanation(
        rows=("*",), dynamic=("failed", "error"), outside_python_range=True,
        details=r"SyntaxError|requires python|python 3\.1[2-9]|invalid syntax",
        reason="the release declares a Python range that excludes the probe's interpreter; it was installed "
               "with --ignore-requires-python, and fails on syntax or APIs of a newer Python",
    ),
)


def explain(*, row: str, version: str | None, static: str, dynamic: str, platform: str, details: str = "",
            outside_python_range: bool = False) -> Explanation | None:
    """The first entry of :data:`EXPLANATIONS` covering this cell, or None."""
    return next((e for e in EXPLANATIONS if e.covers(row=row, version=version, static=static, dynamic=dynamic,
                                                     platform=platform, details=details,
                                                     outside_python_range=outside_python_range)), None)
