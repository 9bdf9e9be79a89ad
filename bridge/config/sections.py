"""The non-model sections of a training configuration: training, optimizer, checkpoint, parallelism.

Each section is a frozen dataclass that validates itself on construction (what was expected,
what was found, how to fix it). Each field's metadata names the Megatron-LM command-line
argument that sets the same thing (``metadata={"megatron_lm": "--micro-batch-size"}``); the
argument table in ``docs/megatron-lm-to-bridge.md`` is generated from it and from MCore's own
sources (see :mod:`bridge.config.argtable`).

Field names are disjoint across sections, so a flat override such as ``lr=1e-4`` has one home.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from bridge.errors import ConfigError, ParallelLayoutError

__all__ = [
    "CKPT_FORMATS",
    "LR_DECAY_STYLES",
    "CheckpointConfig",
    "OptimizerConfig",
    "ParallelismConfig",
    "TrainingConfig",
]

LR_DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
CKPT_FORMATS = ("torch_dist", "torch", "torch_dcp", "fsdp_dtensor")


def _arg(default: Any, flag: str) -> Any:
    """A dataclass field whose Megatron-LM command-line argument is ``flag``."""
    return field(default=default, metadata={"megatron_lm": flag})


def _positive(section: object, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{type(section).__name__}.{name} must be a positive integer, found {value!r}")


@dataclass(frozen=True)
class TrainingConfig:
    """What one training run does: batch sizes, sequence length, iterations, seed."""

    micro_batch_size: int = _arg(1, "--micro-batch-size")
    """Samples per forward/backward pass on one data-parallel rank."""
    global_batch_size: int = _arg(32, "--global-batch-size")
    """Samples per optimizer step over all data-parallel ranks (a multiple of micro_batch_size)."""
    seq_length: int = _arg(4096, "--seq-length")
    """Tokens per training sample; at most the model's maximum position embeddings."""
    train_iters: int = _arg(1000, "--train-iters")
    """Optimizer steps to train for."""
    eval_interval: int = _arg(1000, "--eval-interval")
    """Steps between evaluations on the validation set."""
    eval_iters: int = _arg(10, "--eval-iters")
    """Batches per evaluation."""
    log_interval: int = _arg(10, "--log-interval")
    """Steps between log lines."""
    seed: int = _arg(1234, "--seed")
    """Random seed of the run (Python, NumPy, torch and MCore's RNG tracker)."""

    def __post_init__(self) -> None:
        _positive(self, "micro_batch_size", "global_batch_size", "seq_length", "train_iters",
                  "eval_interval", "eval_iters", "log_interval")
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of micro_batch_size "
                f"({self.micro_batch_size}) times the data-parallel size; choose a multiple of "
                f"{self.micro_batch_size}"
            )


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and learning-rate schedule.

    The optimizer fields keep MCore's names (``megatron.core.optimizer.OptimizerConfig``): see
    :meth:`mcore_kwargs`. The schedule fields are those of Megatron-LM's
    ``OptimizerParamScheduler``.
    """

    optimizer: Literal["adam", "sgd"] = _arg("adam", "--optimizer")
    """Optimizer: 'adam' (AdamW, decoupled weight decay) or 'sgd'."""
    lr: float = _arg(3e-4, "--lr")
    """Peak learning rate (reached after warm-up)."""
    min_lr: float = _arg(3e-5, "--min-lr")
    """Learning rate at the end of the decay."""
    weight_decay: float = _arg(0.1, "--weight-decay")
    """Decoupled weight-decay coefficient."""
    adam_beta1: float = _arg(0.9, "--adam-beta1")
    """Adam's first-moment decay rate."""
    adam_beta2: float = _arg(0.95, "--adam-beta2")
    """Adam's second-moment decay rate."""
    adam_eps: float = _arg(1e-8, "--adam-eps")
    """Adam's denominator term."""
    clip_grad: float = _arg(1.0, "--clip-grad")
    """Global gradient-norm clip (0 disables clipping)."""
    use_distributed_optimizer: bool = _arg(True, "--use-distributed-optimizer")
    """Shard optimizer state over data-parallel ranks (ZeRO-1)."""
    lr_decay_style: str = _arg("cosine", "--lr-decay-style")
    """Decay after warm-up: constant, linear, cosine, inverse-square-root or WSD."""
    lr_warmup_iters: int = _arg(0, "--lr-warmup-iters")
    """Steps of linear warm-up from 0 to lr."""
    lr_decay_iters: int | None = _arg(None, "--lr-decay-iters")
    """Steps over which lr decays to min_lr (None: the training's train_iters)."""

    _MCORE = ("optimizer", "lr", "min_lr", "weight_decay", "adam_beta1", "adam_beta2", "adam_eps",
              "clip_grad", "use_distributed_optimizer")

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', found {self.optimizer!r}")
        if self.lr_decay_style not in LR_DECAY_STYLES:
            raise ConfigError(f"lr_decay_style must be one of {LR_DECAY_STYLES}, found {self.lr_decay_style!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"expected 0 <= min_lr <= lr, found min_lr={self.min_lr}, lr={self.lr}")
        for beta in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, beta) < 1:
                raise ConfigError(f"{beta} must be in [0, 1), found {getattr(self, beta)}")
        if self.weight_decay < 0 or self.clip_grad < 0 or self.adam_eps <= 0:
            raise ConfigError(
                f"expected weight_decay >= 0, clip_grad >= 0 and adam_eps > 0; found {self.weight_decay}, "
                f"{self.clip_grad}, {self.adam_eps}"
            )
        if self.lr_warmup_iters < 0:
            raise ConfigError(f"lr_warmup_iters must be >= 0, found {self.lr_warmup_iters}")
        _positive(self, "lr_decay_iters")

    def mcore_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``megatron.core.optimizer.OptimizerConfig`` (same names)."""
        return {name: getattr(self, name) for name in self._MCORE}


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how the run saves and resumes (Megatron checkpoints, not HF exports)."""

    save: str | None = _arg(None, "--save")
    """Directory to save checkpoints to (None: never save)."""
    load: str | None = _arg(None, "--load")
    """Directory to resume from (None: start from the initial weights)."""
    pretrained_checkpoint: str | None = _arg(None, "--pretrained-checkpoint")
    """Checkpoint to initialise the weights from when not resuming (e.g. a converted HF model)."""
    save_interval: int | None = _arg(None, "--save-interval")
    """Steps between saves (None: only at the end)."""
    ckpt_format: str = _arg("torch_dist", "--ckpt-format")
    """On-disk format: torch_dist (distributed, resharding on load), torch, torch_dcp or fsdp_dtensor."""
    async_save: bool = _arg(False, "--async-save")
    """Write checkpoints in the background (torch_dist only)."""

    def __post_init__(self) -> None:
        if self.ckpt_format not in CKPT_FORMATS:
            raise ConfigError(f"ckpt_format must be one of {CKPT_FORMATS}, found {self.ckpt_format!r}")
        _positive(self, "save_interval")
        if self.save_interval is not None and self.save is None:
            raise ConfigError(f"save_interval={self.save_interval} needs a save directory; set save=...")
        if self.async_save and self.ckpt_format != "torch_dist":
            raise ConfigError(f"async_save needs ckpt_format='torch_dist', found {self.ckpt_format!r}")


@dataclass(frozen=True)
class ParallelismConfig:
    """How the model is split over GPUs. Every field is an MCore ``ModelParallelConfig`` field."""

    tensor_model_parallel_size: int = _arg(1, "--tensor-model-parallel-size")
    """Tensor parallelism: each layer's weights split over this many ranks."""
    pipeline_model_parallel_size: int = _arg(1, "--pipeline-model-parallel-size")
    """Pipeline parallelism: the layers split into this many stages."""
    virtual_pipeline_model_parallel_size: int | None = _arg(None, "--virtual-pipeline-model-parallel-size")
    """Interleaved pipeline: model chunks per pipeline rank (None: not interleaved)."""
    context_parallel_size: int = _arg(1, "--context-parallel-size")
    """Context parallelism: each sequence split over this many ranks."""
    expert_model_parallel_size: int = _arg(1, "--expert-model-parallel-size")
    """Expert parallelism: MoE experts distributed over this many ranks."""
    expert_tensor_parallel_size: int | None = _arg(None, "--expert-tensor-parallel-size")
    """Tensor parallelism inside each expert (None: tensor_model_parallel_size)."""
    sequence_parallel: bool = _arg(False, "--sequence-parallel")
    """Split norms and dropout along the sequence over the TP ranks (needs TP > 1)."""

    def __post_init__(self) -> None:
        _positive(self, "tensor_model_parallel_size", "pipeline_model_parallel_size",
                  "virtual_pipeline_model_parallel_size", "context_parallel_size",
                  "expert_model_parallel_size", "expert_tensor_parallel_size")
        if self.sequence_parallel and self.tensor_model_parallel_size == 1:
            raise ParallelLayoutError(
                "sequence_parallel=True needs tensor_model_parallel_size > 1 (it splits along TP ranks); "
                "set tensor_model_parallel_size or sequence_parallel=False"
            )
        if self.virtual_pipeline_model_parallel_size is not None and self.pipeline_model_parallel_size == 1:
            raise ParallelLayoutError(
                f"virtual_pipeline_model_parallel_size={self.virtual_pipeline_model_parallel_size} needs "
                "pipeline_model_parallel_size > 1; raise PP or leave VPP unset"
            )

    @property
    def model_parallel_size(self) -> int:
        """GPUs one model replica needs: TP x PP x CP."""
        return self.tensor_model_parallel_size * self.pipeline_model_parallel_size * self.context_parallel_size

    def provider_fields(self) -> dict[str, Any]:
        """The fields to set on a provider; ``None`` (unset) ones are left out."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
