"""Model providers: the bridge's description of an MCore GPT model, and its builder.

``GPTModelProvider`` holds architecture, parallelism and numerics as plain fields.
It produces ``TransformerConfig`` keyword arguments (:meth:`transformer_config_kwargs`,
pure: no MCore import) and ``GPTModel`` keyword arguments (:meth:`gpt_model_kwargs`),
which :mod:`bridge.compat` adapts to the installed release. Any other
``TransformerConfig`` field of the installed MCore can be set as an attribute
(``provider.recompute_granularity = "full"``); an unknown one is an error naming the
closest fields. :meth:`finalize` validates and locks the provider;
:meth:`provide_distributed_model` builds this rank's model chunks.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bridge import compat, runtime
from bridge._logging import get_logger
from bridge.errors import ConfigError, ParallelLayoutError, UnsupportedFeatureError
from bridge.inference import record_vocab_padding
from bridge.parallel.vocab import VocabPadding, vocab_padding

__all__ = ["GPTModelProvider", "ACTIVATIONS"]

log = get_logger("providers")

ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "silu": torch.nn.functional.silu,
    "gelu": torch.nn.functional.gelu,
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "relu": torch.nn.functional.relu,
    "squared_relu": lambda x: torch.square(torch.nn.functional.relu(x)),  # HF "relu2" (Nemotron)
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),  # MCore's quick_gelu, bit for bit (GPT-OSS's experts)
}

# Fusions with no CPU kernel; always off here (MCore falls back to torch).
_FUSIONS_OFF = {
    "bias_activation_fusion": False,
    "masked_softmax_fusion": False,
    "persist_layer_norm": False,
    "bias_dropout_fusion": False,
    "apply_rope_fusion": False,
    "gradient_accumulation_fusion": False,
}

Hook = Callable[[list[torch.nn.Module]], list[torch.nn.Module]]


@dataclass
class GPTModelProvider:
    """Everything needed to build an MCore ``GPTModel``; see the module docstring."""

    # architecture
    num_layers: int = 2
    hidden_size: int = 64
    ffn_hidden_size: int = 256
    num_attention_heads: int = 4
    num_query_groups: int | None = None
    kv_channels: int | None = None
    vocab_size: int = 128
    seq_length: int = 2048
    normalization: str = "RMSNorm"
    layernorm_epsilon: float = 1e-5
    layernorm_zero_centered_gamma: bool = False
    gated_linear_unit: bool = True
    activation: str = "silu"
    add_bias_linear: bool = False
    add_qkv_bias: bool = False
    qk_layernorm: bool = False
    position_embedding_type: str = "rope"
    rotary_base: float = 10000.0
    rotary_percent: float = 1.0
    rope_scaling: bool = False
    rope_scaling_factor: float = 8.0
    seq_len_interpolation_factor: float | None = None
    share_embeddings_and_output_weights: bool = False
    make_vocab_size_divisible_by: int = 128
    # Megatron-Bridge's default: HF's vocabulary as is; True pads to a multiple of make_vocab_size_divisible_by x TP.
    # Either way a TP size that does not divide the vocabulary pads it to the next multiple (see vocab_padding).
    should_pad_vocab: bool = False
    window_size: tuple[int, int] | None = None
    init_method_std: float = 0.02
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    # mixture of experts
    num_moe_experts: int | None = None
    moe_router_topk: int = 2
    moe_ffn_hidden_size: int | None = None
    moe_shared_expert_intermediate_size: int | None = None
    # parallelism
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    expert_model_parallel_size: int = 1
    sequence_parallel: bool = False
    num_layers_in_first_pipeline_stage: int | None = None
    num_layers_in_last_pipeline_stage: int | None = None
    # numerics
    params_dtype: torch.dtype = torch.float32
    perform_initialization: bool = True
    # building
    transformer_layer_spec: Any = None  # None (local spec) | ModuleSpec | callable(provider) -> ModuleSpec
    # "auto": GPTModel while the installed MCore has it, else HybridModel; "gpt"; "hybrid" (0.18+). See bridge.hybrid_model.
    model_class: str = "auto"
    parallel_output: bool = False
    config_overrides: dict[str, Any] = field(default_factory=dict)

    # -- attribute access: any TransformerConfig field, lock after finalize ----------------
    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_finalized"):
            raise ConfigError(
                f"cannot set {name!r}: the provider is finalized. Set fields before finalize(), "
                "or copy it with dataclasses.replace(provider, ...)"
            )
        if name.startswith("_") or name in _field_names(type(self)):
            object.__setattr__(self, name, value)
            return
        compat.check_config_fields([name], self.config_class)
        object.__setattr__(self, "config_overrides", {**self.config_overrides, name: value})  # copies never share it

    def __getattr__(self, name: str) -> Any:
        overrides = self.__dict__.get("config_overrides", {})
        if name in overrides:
            return overrides[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- what the provider produces ---------------------------------------------------------
    config_class: str = dataclasses.field(default="TransformerConfig", init=False, repr=False)

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def query_groups(self) -> int:
        return self.num_query_groups or self.num_attention_heads

    @property
    def vocab_padding(self) -> VocabPadding:
        """The :class:`~bridge.parallel.vocab.VocabPadding` of this model: none unless ``should_pad_vocab`` or a TP
        size that does not divide ``vocab_size``."""
        return vocab_padding(self.vocab_size, tp=self.tensor_model_parallel_size, should_pad=self.should_pad_vocab,
                             divisible_by=self.make_vocab_size_divisible_by)

    @property
    def padded_vocab_size(self) -> int:
        """The vocabulary rows MCore allocates (``vocab_padding.padded_size``)."""
        return self.vocab_padding.padded_size

    def transformer_config_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``TransformerConfig`` (before compat adaptation); pure."""
        cpu = not torch.cuda.is_available()
        kw: dict[str, Any] = {
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "ffn_hidden_size": self.ffn_hidden_size,
            "num_attention_heads": self.num_attention_heads,
            "num_query_groups": self.query_groups,
            "kv_channels": self.head_dim,
            "normalization": self.normalization,
            "layernorm_epsilon": self.layernorm_epsilon,
            "layernorm_zero_centered_gamma": self.layernorm_zero_centered_gamma,
            "gated_linear_unit": self.gated_linear_unit,
            "activation_func": ACTIVATIONS[self.activation],
            "add_bias_linear": self.add_bias_linear,
            "add_qkv_bias": self.add_qkv_bias,
            "qk_layernorm": self.qk_layernorm,
            "hidden_dropout": self.hidden_dropout,
            "attention_dropout": self.attention_dropout,
            "init_method_std": self.init_method_std,
            "use_cpu_initialization": cpu,
            "perform_initialization": self.perform_initialization,
            "params_dtype": self.params_dtype,
            "bf16": self.params_dtype == torch.bfloat16,
            "fp16": self.params_dtype == torch.float16,
            "pipeline_dtype": self.params_dtype,
            "tensor_model_parallel_size": self.tensor_model_parallel_size,
            "pipeline_model_parallel_size": self.pipeline_model_parallel_size,
            "expert_model_parallel_size": self.expert_model_parallel_size,
            "sequence_parallel": self.sequence_parallel,
            "num_layers_in_first_pipeline_stage": self.num_layers_in_first_pipeline_stage,
            "num_layers_in_last_pipeline_stage": self.num_layers_in_last_pipeline_stage,
            "window_size": self.window_size,
            **_FUSIONS_OFF,
        }
        if self.num_moe_experts:
            kw.update(
                num_moe_experts=self.num_moe_experts,
                moe_router_topk=self.moe_router_topk,
                moe_ffn_hidden_size=self.moe_ffn_hidden_size or self.ffn_hidden_size,
                moe_shared_expert_intermediate_size=self.moe_shared_expert_intermediate_size,
            )
        kw.update(self.config_overrides)
        return kw

    def gpt_model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``GPTModel`` besides config, spec and pre/post-process; pure."""
        return {
            "vocab_size": self.padded_vocab_size,
            "max_sequence_length": self.seq_length,
            "parallel_output": self.parallel_output,
            "share_embeddings_and_output_weights": self.share_embeddings_and_output_weights,
            "position_embedding_type": self.position_embedding_type,
            "rotary_percent": self.rotary_percent,
            "rotary_base": self.rotary_base,
            "rope_scaling": self.rope_scaling,
            "rope_scaling_factor": self.rope_scaling_factor if self.rope_scaling else None,
            "seq_len_interpolation_factor": self.seq_len_interpolation_factor,
        }

    def layer_spec_kwargs(self) -> dict[str, Any]:
        """Arguments for ``get_gpt_layer_local_spec`` (the default layer spec)."""
        return {
            "normalization": self.normalization,
            "qk_layernorm": self.qk_layernorm,
            "num_experts": self.num_moe_experts,
            "moe_grouped_gemm": False,
        }

    # -- validation and locking -------------------------------------------------------------
    def validate(self) -> None:
        """Check the architecture and layout; raise with what to change."""
        tp, pp = self.tensor_model_parallel_size, self.pipeline_model_parallel_size
        if self.num_attention_heads % self.query_groups:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_query_groups "
                f"({self.query_groups})"
            )
        if self.query_groups % tp:
            raise ParallelLayoutError(
                f"tensor_model_parallel_size={tp} must divide num_query_groups={self.query_groups} "
                "(each TP rank holds whole query groups); choose TP from "
                f"{[d for d in range(1, self.query_groups + 1) if self.query_groups % d == 0]}"
            )
        if self.ffn_hidden_size % tp:
            raise ParallelLayoutError(f"tensor_model_parallel_size={tp} must divide ffn_hidden_size={self.ffn_hidden_size}")
        from bridge.parallel.pp import PipelineLayout

        PipelineLayout(
            num_layers=self.num_layers, pp=pp,
            first_stage_layers=self.num_layers_in_first_pipeline_stage,
            last_stage_layers=self.num_layers_in_last_pipeline_stage,
        )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation {self.activation!r} unknown; expected one of {sorted(ACTIVATIONS)}")
        if self.window_size is not None and self.transformer_layer_spec is None \
                and not compat.has_feature("local_sliding_window"):
            raise UnsupportedFeatureError(
                f"window_size={self.window_size} (sliding-window attention) needs a local DotProductAttention "
                f"that applies it, but in megatron-core {compat.installed_version()} only Transformer Engine's "
                "attention does. Upgrade megatron-core, or pass a Transformer Engine layer spec "
                "(transformer_layer_spec) on GPU."
            )
        compat.adapt_config_kwargs(self.transformer_config_kwargs(), self.config_class)
        self.resolved_model_class()

    def finalize(self) -> "GPTModelProvider":
        """Validate, then lock the provider against further changes. Idempotent."""
        if not self.__dict__.get("_finalized"):
            self.validate()
            padding = self.vocab_padding
            if padding.padding:
                log.info("%s", padding.describe())
            object.__setattr__(self, "_finalized", True)
        return self

    @property
    def finalized(self) -> bool:
        return bool(self.__dict__.get("_finalized"))

    # -- building -----------------------------------------------------------------------------
    def transformer_config(self):
        """The MCore config object for the installed release."""
        from megatron.core.transformer import transformer_config as tc

        cls = getattr(tc, self.config_class)
        kwargs = compat.adapt_config_kwargs(self.transformer_config_kwargs(), self.config_class)
        return cls(**kwargs)

    def layer_spec(self):
        spec = self.transformer_layer_spec
        if spec is None:  # the config lets releases before 0.10 give RMSNorm to the final norm too
            return compat.local_layer_spec(config=self.transformer_config(), **self.layer_spec_kwargs())
        if callable(spec) and not hasattr(spec, "module"):
            return spec(self)
        return spec

    def register_pre_wrap_hook(self, hook: Hook) -> None:
        """``hook(model_chunks) -> model_chunks`` runs after building, before DDP wrapping."""
        self.__dict__.setdefault("_hooks", []).append(hook)

    def resolved_model_class(self) -> str:
        """``"gpt"`` or ``"hybrid"``: the MCore model :meth:`provide` builds from ``model_class`` on this release."""
        from bridge.hybrid_model import resolve_model_class

        return resolve_model_class(self.model_class)

    def provide(self, pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None):
        """Build one ``GPTModel`` (or, per :meth:`resolved_model_class`, ``HybridModel``) chunk for this rank
        (model-parallel groups must exist)."""
        from bridge import hybrid_model

        if self.resolved_model_class() == "hybrid":
            return hybrid_model.build_hybrid_model(self, pre_process=pre_process, post_process=post_process,
                                                   vp_stage=vp_stage)
        hybrid_model.note_gpt_deprecation()
        from megatron.core.models.gpt import GPTModel

        kwargs = compat.adapt_call_kwargs(
            GPTModel.__init__, {**self.gpt_model_kwargs(), "vp_stage": vp_stage}, "GPTModel"
        )
        model = GPTModel(
            config=self.transformer_config(), transformer_layer_spec=self.layer_spec(),
            pre_process=pre_process, post_process=post_process, **kwargs,
        )
        return model

    def provide_distributed_model(self, wrap_with_ddp: bool = False, seed: int = 1234) -> list[torch.nn.Module]:
        """Build this rank's model chunks (initialising process groups if needed)."""
        from megatron.core import parallel_state as ps

        self.finalize()
        vpp = self.config_overrides.get("virtual_pipeline_model_parallel_size")  # a TransformerConfig field
        runtime.ensure_model_parallel(self.tensor_model_parallel_size, self.pipeline_model_parallel_size,
                                      ep=self.expert_model_parallel_size, vpp=vpp, seed=seed)
        if vpp is None:
            chunks: list[torch.nn.Module] = [
                self.provide(pre_process=ps.is_pipeline_first_stage(), post_process=ps.is_pipeline_last_stage())]
        else:  # one chunk per virtual stage, in model order on this rank (MCore's interleaved schedule)
            chunks = [self.provide(pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=v),
                                   post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=v), vp_stage=v)
                      for v in range(vpp)]
        record_vocab_padding(chunks, self.vocab_padding)  # forward_logits and sampling strip / mask it
        if torch.cuda.is_available():
            chunks = [chunk.cuda() for chunk in chunks]
        for hook in self.__dict__.get("_hooks", []):
            chunks = hook(chunks)
        if wrap_with_ddp:
            chunks = _wrap_ddp(chunks)
        log.debug("built %d chunk(s) on TP rank %d, PP rank %d", len(chunks),
                  ps.get_tensor_model_parallel_rank(), ps.get_pipeline_model_parallel_rank())
        return chunks


def _wrap_ddp(chunks: list[torch.nn.Module]) -> list[torch.nn.Module]:
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig

    ddp_config = DistributedDataParallelConfig()
    return [DistributedDataParallel(config=c.config, ddp_config=ddp_config, module=c) for c in chunks]


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    """Dataclass fields of a provider class, subclasses' own fields included."""
    return frozenset(f.name for f in dataclasses.fields(cls)) | {"config_class"}
