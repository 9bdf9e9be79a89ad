"""ConfigContainer: routing of overrides, validation at creation, and the to_dict/from_dict pair."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import (
    CheckpointConfig,
    ConfigContainer,
    ModelConfig,
    OptimizerConfig,
    ParallelismConfig,
    TrainingConfig,
    UnknownFieldError,
)
from bridge.errors import ConfigError, ParallelLayoutError
from tests.helpers.tiny import TINY_LLAMA

TINY = {**TINY_LLAMA, "architectures": ["LlamaForCausalLM"]}


@pytest.fixture(scope="module")
def base() -> ConfigContainer:
    return ConfigContainer(model=ModelConfig(hf_config=TINY))


# -- strategies ------------------------------------------------------------------------------------

def trainings(*, max_micro: int = 8, max_steps: int = 4) -> st.SearchStrategy[TrainingConfig]:
    return st.builds(
        lambda mbs, k, seq, iters: TrainingConfig(micro_batch_size=mbs, global_batch_size=mbs * k,
                                                  seq_length=seq, train_iters=iters),
        st.integers(1, max_micro), st.integers(1, max_steps), st.sampled_from([64, 128, 96]),
        st.integers(1, 10_000))


def optimizers() -> st.SearchStrategy[OptimizerConfig]:
    lr = st.floats(1e-6, 1e-2, allow_nan=False)
    return st.builds(
        lambda lr, frac, wd, b1, style, warm: OptimizerConfig(lr=lr, min_lr=lr * frac, weight_decay=wd,
                                                              adam_beta1=b1, lr_decay_style=style,
                                                              lr_warmup_iters=warm),
        lr, st.floats(0, 1), st.floats(0, 0.5), st.floats(0, 0.99), st.sampled_from(["cosine", "linear", "WSD"]),
        st.integers(0, 100))


def checkpoints() -> st.SearchStrategy[CheckpointConfig]:
    return st.one_of(
        st.just(CheckpointConfig()),
        st.builds(lambda d, n, fmt: CheckpointConfig(save=d, load=d, save_interval=n, ckpt_format=fmt),
                  st.sampled_from(["/ckpt", "runs/x"]), st.integers(1, 1000), st.sampled_from(["torch_dist", "torch"])))


def parallelisms(*, max_tp: int = 2, max_pp: int = 2) -> st.SearchStrategy[ParallelismConfig]:
    """Layouts that fit the tiny Llama (2 layers, 2 query groups, no experts)."""
    return st.builds(
        lambda tp, pp, cp, sp: ParallelismConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                                 context_parallel_size=cp, sequence_parallel=sp and tp > 1),
        st.integers(1, max_tp), st.integers(1, max_pp), st.sampled_from([1, 2]), st.booleans())


def model_overrides() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional={
        "recompute_granularity": st.just("selective"),
        "init_method_std": st.floats(0.001, 0.1),
        "hidden_dropout": st.floats(0, 0.5),
        "test_mode": st.booleans(),
    })


# -- properties ------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(training=trainings(), optimizer=optimizers(), checkpoint=checkpoints(), parallelism=parallelisms(),
       overrides=model_overrides())
def test_to_dict_and_from_dict_are_inverse(training, optimizer, checkpoint, parallelism, overrides) -> None:
    cfg = ConfigContainer(model=ModelConfig(hf_config=TINY, overrides=overrides), training=training,
                          optimizer=optimizer, checkpoint=checkpoint, parallelism=parallelism)
    data = cfg.to_dict()
    again = ConfigContainer.from_dict(data)
    assert again.to_dict() == data
    assert (again.training, again.optimizer, again.checkpoint, again.parallelism) == \
        (training, optimizer, checkpoint, parallelism)
    assert dict(again.model.overrides) == overrides


# -- overrides -------------------------------------------------------------------------------------

def test_flat_overrides_are_routed_to_their_sections(base: ConfigContainer) -> None:
    cfg = base.with_overrides({"lr": 1e-4, "min_lr": 1e-5, "train_iters": 7, "save": "/ckpt",
                               "tensor_model_parallel_size": 2, "recompute_granularity": "selective"},
                              **{"training.micro_batch_size": 2, "model.init_method_std": 0.05})
    assert (cfg.optimizer.lr, cfg.optimizer.min_lr, cfg.training.train_iters) == (1e-4, 1e-5, 7)
    assert (cfg.checkpoint.save, cfg.parallelism.tensor_model_parallel_size) == ("/ckpt", 2)
    assert cfg.training.micro_batch_size == 2
    assert dict(cfg.model.overrides) == {"recompute_granularity": "selective", "init_method_std": 0.05}
    assert base.optimizer.lr != 1e-4  # the original is untouched
    tc = cfg.transformer_config()
    assert (tc.tensor_model_parallel_size, tc.recompute_granularity, tc.init_method_std) == (2, "selective", 0.05)


@pytest.mark.parametrize(
    ("overrides", "error", "names"),
    [
        ({"lrr": 1e-4}, UnknownFieldError, ["'lr'"]),
        ({"recompute_granularty": "full"}, UnknownFieldError, ["'recompute_granularity'"]),
        ({"optimizer.adam_beta": 0.9}, UnknownFieldError, ["'adam_beta1'", "'adam_beta2'"]),
        ({"training.hidden_size": 8}, UnknownFieldError, ["model.hidden_size"]),
        ({"trainig.train_iters": 8}, UnknownFieldError, ["training"]),
        ({"model.tensor_model_parallel_size": 2}, ConfigError, ["parallelism section"]),
    ],
)
def test_unknown_override_names_the_closest(base: ConfigContainer, overrides: dict, error: type,
                                            names: list[str]) -> None:
    with pytest.raises(error) as err:
        base.with_overrides(overrides)
    for name in names:
        assert name in str(err.value)


def test_replace_takes_sections_or_mappings(base: ConfigContainer) -> None:
    cfg = base.replace(training={"train_iters": 3}, optimizer=OptimizerConfig(lr=1e-3, min_lr=0.0),
                       model={"test_mode": True})
    assert (cfg.training.train_iters, cfg.optimizer.lr, cfg.model.test_mode) == (3, 1e-3, True)
    with pytest.raises(ConfigError, match="no section 'data'"):
        base.replace(data={})
    with pytest.raises(UnknownFieldError, match="'train_iters'"):
        base.replace(training={"train_iter": 3})
    with pytest.raises(ConfigError, match="must be a TrainingConfig"):
        ConfigContainer(model=base.model, training={"train_iters": 3})  # type: ignore[arg-type]


# -- validation at creation ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "error", "says"),
    [
        ({"parallelism": {"tensor_model_parallel_size": 4}}, ParallelLayoutError, "num_query_groups=2"),
        ({"parallelism": {"pipeline_model_parallel_size": 4}}, ParallelLayoutError, "num_layers"),
        ({"parallelism": {"expert_model_parallel_size": 2}}, ParallelLayoutError, "no experts"),
        ({"parallelism": {"context_parallel_size": 4}, "training": {"seq_length": 100}}, ParallelLayoutError,
         "2 x context_parallel_size"),
        ({"parallelism": {"pipeline_model_parallel_size": 2, "virtual_pipeline_model_parallel_size": 2}},
         ParallelLayoutError, "PP x VPP"),
    ],
)
def test_invalid_layouts_fail_at_creation(base: ConfigContainer, changes: dict, error: type, says: str) -> None:
    with pytest.raises(error, match=says.replace("(", r"\(")):
        base.replace(**changes)


def test_from_dict_refuses_unknown_sections_and_fields(base: ConfigContainer) -> None:
    data = base.to_dict()
    with pytest.raises(ConfigError, match="unknown sections"):
        ConfigContainer.from_dict({**data, "logging": {}})
    with pytest.raises(UnknownFieldError, match="'global_batch_size'"):
        ConfigContainer.from_dict({**data, "training": {"global_batch": 8}})
    with pytest.raises(ConfigError, match="needs a 'model'"):
        ConfigContainer.from_dict({"training": {}})


def test_mcore_optimizer_config_takes_precision_from_the_model(base: ConfigContainer) -> None:
    bf16 = base.replace(model=ModelConfig(hf_config={**TINY, "torch_dtype": "bfloat16"}))
    opt = bf16.replace(optimizer={"lr": 2e-4}).mcore_optimizer_config()
    assert (opt.lr, opt.bf16, opt.fp16, opt.params_dtype) == (2e-4, True, False, torch.bfloat16)
    assert dataclasses.is_dataclass(opt) and type(opt).__module__.startswith("megatron.core")
