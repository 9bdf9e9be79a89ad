"""The only module of :mod:`bridge` that detects how MCore versions differ.

Every version difference is expressed here as a *named feature* or a *known rename*,
never as ``hasattr`` checks scattered through the code; other modules (providers, model
families, ``hybrid_model``) decide on those names (``has_feature``), see docs/architecture.md:

* :func:`installed_version` and :func:`config_fields` describe the installed MCore;
* :func:`adapt_config_kwargs` turns the provider's ``TransformerConfig`` keyword
  arguments into ones the installed release accepts (renames applied, switched-off
  features that the release lacks dropped) or raises :class:`UnsupportedFeatureError`
  naming the field, the installed version and the first release that has it;
* :func:`local_layer_spec` builds the local (non-TE) GPT layer spec with the arguments
  the installed ``get_gpt_layer_local_spec`` accepts;
* :data:`FEATURES` maps feature names to predicates over the installed release.

Field history (first/last release per field, renames) comes from
``bridge/data/field_history.json``, which the harness generates from every release.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
from importlib import resources
from typing import Any, Callable, Mapping

from packaging.version import Version

from bridge._logging import get_logger
from bridge.errors import ConfigError, UnsupportedFeatureError

__all__ = [
    "FEATURES",
    "MODEL_CLASS_SOURCES",
    "adapt_call_kwargs",
    "adapt_config_kwargs",
    "check_config_fields",
    "closest_fields",
    "config_fields",
    "expert_data_parallel_rank",
    "field_history",
    "fields_in_release",
    "has_feature",
    "installed_version",
    "is_switched_off",
    "local_layer_spec",
    "spec_submodules",
]

log = get_logger("compat")

MODEL_CLASS_SOURCES: dict[str, tuple[str, str]] = {
    "gpt": ("megatron.core.models.gpt.gpt_model", "GPTModel"),
    "hybrid": ("megatron.core.models.hybrid.hybrid_model", "HybridModel"),
}
"""``model_class -> (module, class)`` of each MCore model class the bridge builds: the named features
``gpt_model`` / ``hybrid_model`` import from here, and :mod:`bridge.requirements` tells the harness which
module each model class needs (the matrix's GPTModel / HybridModel verdicts)."""

# Known renames, new name -> old name. Extended by the generated field history.
_KNOWN_RENAMES: dict[str, str] = {}


@functools.lru_cache(maxsize=1)
def installed_version() -> Version:
    """Version of the importable megatron-core (from its ``package_info``)."""
    from megatron.core import package_info

    return Version(package_info.__version__)


@functools.lru_cache(maxsize=None)
def config_fields(class_name: str = "TransformerConfig") -> frozenset[str]:
    """Init fields of the installed ``TransformerConfig`` (or a subclass such as MLATransformerConfig)."""
    from megatron.core.transformer import transformer_config as tc

    cls = getattr(tc, class_name, None)
    if cls is None:
        raise UnsupportedFeatureError(
            f"expected megatron.core.transformer.transformer_config.{class_name}, but megatron-core "
            f"{installed_version()} has no such class; upgrade megatron-core"
        )
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init)


@functools.lru_cache(maxsize=1)
def field_history() -> dict[str, Any]:
    """The harness-generated history of TransformerConfig fields (empty if not shipped)."""
    try:
        text = resources.files("bridge").joinpath("data/field_history.json").read_text()
    except (FileNotFoundError, OSError):
        return {"fields": {}, "renames": {}}
    data = json.loads(text)
    data.setdefault("fields", {})
    data.setdefault("renames", {})
    return data


def _renames_new_to_old() -> dict[str, str]:
    out = dict(_KNOWN_RENAMES)
    for old, new in field_history().get("renames", {}).items():
        out.setdefault(new, old)
    return out


def closest_fields(name: str, class_name: str = "TransformerConfig", n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, sorted(config_fields(class_name)), n=n, cutoff=0.6)


def _first_release(name: str) -> str | None:
    info = field_history()["fields"].get(name)
    return info.get("first") if isinstance(info, dict) else None


def _missing_field_error(name: str, class_name: str) -> UnsupportedFeatureError:
    """The error for a field the installed release lacks, from what the field history knows of it:
    renamed (the new name and since when), removed (the last release with it), added later (the first
    release with it), or unknown (the closest names)."""
    installed = installed_version()
    history = field_history()
    info = history["fields"].get(name)
    info = info if isinstance(info, dict) else {}
    renames = history.get("renames", {})
    if name in renames:
        new, since = renames[name], _first_release(renames[name])
        return UnsupportedFeatureError(
            f"{class_name} field {name!r} was renamed to {new!r}"
            + (f" in megatron-core {since}" if since else "")
            + f"; megatron-core {installed} is installed. Set {new!r} instead."
        )
    first, last = info.get("first"), info.get("last")
    if last is not None and Version(last) < installed:
        return UnsupportedFeatureError(
            f"{class_name} field {name!r} exists in megatron-core {first} to {last} only, and {installed} is "
            f"installed. Leave {name!r} unset, or install 'megatron-core<={last}'"
        )
    if first is not None and Version(first) > installed:
        old = info.get("renamed_from")
        return UnsupportedFeatureError(
            f"{class_name} field {name!r} needs megatron-core >= {first}, but {installed} is installed"
            + (f" (earlier releases call it {old!r})" if old else "")
            + f". Upgrade with: pip install 'megatron-core>={first}'"
        )
    hint = closest_fields(name, class_name)
    return UnsupportedFeatureError(
        f"{class_name} of megatron-core {installed} has no field {name!r}"
        + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "; no field has a similar name.")
    )


def fields_in_release(version: str) -> frozenset[str]:
    """``TransformerConfig`` fields (inherited ones included) of a release, per the field history.

    Lets a test or a tool reason about a release that is not installed.
    """
    history = field_history()
    releases = list(history.get("releases", []))
    if version not in releases:
        raise ConfigError(
            f"the field history knows releases {releases[0] if releases else '-'} to "
            f"{releases[-1] if releases else '-'}, not {version!r}; regenerate bridge/data/field_history.json"
        )
    at = releases.index(version)
    out = set()
    for name, info in history["fields"].items():
        last = info.get("last") or releases[-1]
        if releases.index(info["first"]) <= at <= releases.index(last) and version not in info.get("absent_in", ()):
            out.add(name)
    return frozenset(out)


def check_config_fields(names: Mapping[str, Any] | list[str], class_name: str = "TransformerConfig") -> None:
    """Raise (before anything is built) if a field does not exist in the installed MCore."""
    fields = config_fields(class_name)
    renames = _renames_new_to_old()
    for name in names:
        if name not in fields and renames.get(name) not in fields:
            raise _missing_field_error(name, class_name)


def is_switched_off(value: Any) -> bool:
    """``None`` or ``False``: the value of a feature switch that is off.

    A field the installed release lacks may be dropped only with such a value: nothing is
    lost, since the release cannot have the feature. Numbers (even 0) are never dropped.
    """
    return value is None or value is False


_is_off = is_switched_off


def adapt_config_kwargs(kwargs: Mapping[str, Any], class_name: str = "TransformerConfig") -> dict[str, Any]:
    """Provider kwargs -> kwargs the installed ``class_name`` accepts.

    A field the installed release lacks is renamed when a rename is known, dropped when
    its value switches a feature off (``None``/``False``: nothing is lost), and
    otherwise reported as :class:`UnsupportedFeatureError`.
    """
    fields = config_fields(class_name)
    renames = _renames_new_to_old()
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in fields:
            out[name] = value
        elif renames.get(name) in fields:
            log.debug("compat: %s is called %s in megatron-core %s", name, renames[name], installed_version())
            out[renames[name]] = value
        elif _is_off(value):
            log.debug("compat: dropping %s=%r (absent in megatron-core %s)", name, value, installed_version())
        else:
            raise _missing_field_error(name, class_name)
    return out


def adapt_call_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Keep the keyword arguments ``fn`` of the installed MCore accepts; switched-off extras are dropped."""
    params = _spec_params(fn)
    out: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in params:
            out[name] = value
        elif _is_off(value):
            log.debug("compat: %s of megatron-core %s has no %s; dropping %r", what, installed_version(), name, value)
        else:
            raise UnsupportedFeatureError(
                f"{what} of megatron-core {installed_version()} has no argument {name!r} (needed for "
                f"{name}={value!r}); upgrade megatron-core or leave {name} unset"
            )
    return out


# --- layer specs ---------------------------------------------------------------------------

def _spec_params(fn: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)


def local_layer_spec(*, normalization: str = "LayerNorm", config: Any = None, **kwargs: Any):
    """The local (pure PyTorch) GPT layer spec with the arguments this MCore accepts.

    ``kwargs`` are passed through when the installed ``get_gpt_layer_local_spec`` knows
    them; unknown ones must be switched off, else :class:`UnsupportedFeatureError`.
    Releases whose local spec has no ``normalization`` argument (before 0.10) get
    ``torch.nn.RMSNorm`` substituted through the spec (see :mod:`bridge.norms`): with the
    ``TransformerConfig`` as ``config`` (model-parallel state in place), as a block spec
    whose final norm is RMSNorm too; without it, as a layer spec (the caller builds the block).
    """
    from megatron.core.models.gpt import gpt_layer_specs

    fn = gpt_layer_specs.get_gpt_layer_local_spec
    params = _spec_params(fn)
    call: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in params:
            call[name] = value
        elif not _is_off(value):
            raise UnsupportedFeatureError(
                f"get_gpt_layer_local_spec of megatron-core {installed_version()} has no argument {name!r} "
                f"(needed for {name}={value!r}); upgrade megatron-core"
            )
    if "normalization" in params:
        return fn(normalization=normalization, **call)
    spec = fn(**call)
    if normalization != "RMSNorm":
        return spec
    from bridge.norms import rmsnorm_block_spec, use_rmsnorm

    if config is None:
        return use_rmsnorm(spec)
    from megatron.core.transformer.transformer_block import get_num_layers_to_build

    return rmsnorm_block_spec(spec, get_num_layers_to_build(config))


def spec_submodules(entry: Any) -> Any:
    """The submodules of a layer-spec entry: ``ModuleSpec.submodules``, or, from 0.19 (whose local spec
    gives the MLP as ``functools.partial(MLP.as_mlp_submodule, submodules=...)``), the partial's
    ``submodules`` keyword. Mutating the result changes the entry."""
    import functools

    if isinstance(entry, functools.partial):
        return entry.keywords["submodules"]
    return entry.submodules


def _local_attention_softmax_module() -> bool:
    """Whether the local ``DotProductAttention`` computes its probabilities with its own
    ``self.scale_mask_softmax`` module from the scaled scores (a subclass can wrap it: soft-capping)."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    return "self.scale_mask_softmax(" in inspect.getsource(DotProductAttention.forward)


# --- named features -----------------------------------------------------------------------

def _has_fields(*names: str) -> Callable[[], bool]:
    return lambda: all(n in config_fields() for n in names)


def _has_spec_arg(name: str) -> Callable[[], bool]:
    def check() -> bool:
        from megatron.core.models.gpt import gpt_layer_specs

        return name in _spec_params(gpt_layer_specs.get_gpt_layer_local_spec)

    return check


def _local_attention_applies_window() -> bool:
    """Whether the local ``DotProductAttention``'s softmax takes ``window_size`` (else it ignores the window)."""
    from megatron.core.fusions.fused_softmax import FusedScaleMaskSoftmax

    return "window_size" in _spec_params(FusedScaleMaskSoftmax.__init__)


def _local_attention_takes_head_sizes() -> bool:
    """Whether the local ``DotProductAttention`` takes ``k_channels``/``v_channels`` (MLA builds it with them)."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    return {"k_channels", "v_channels"} <= _spec_params(DotProductAttention.__init__)


def _has_inference_rng_tracker() -> bool:
    from megatron.core.tensor_parallel import random as mrandom

    return "inference_rng_tracker" in _spec_params(mrandom.initialize_rng_tracker)


def _local_experts_take_their_own_size() -> bool:
    """Whether the local experts (``SequentialMLP``) build with ``moe_ffn_hidden_size != ffn_hidden_size``.

    0.10 and 0.11 assert the two are equal ("Please use GroupedMLP or TEGroupedMLP when
    moe_ffn_hidden_size is different from ffn_hidden_size"); 0.12 gives its experts a config copy
    whose ``ffn_hidden_size`` is ``moe_ffn_hidden_size``. Read from the installed ``SequentialMLP``.
    """
    from megatron.core.transformer.moe.experts import SequentialMLP

    return "moe_ffn_hidden_size == self.config.ffn_hidden_size" not in inspect.getsource(SequentialMLP.__init__)


def _moe_spec_takes_a_router() -> bool:
    """Whether the MoE layer spec has a ``router`` slot (``MoESubmodules.router``), so a layer spec can
    give an MoE layer its own router class (Ernie-4.5-MoE's); releases without it build ``TopKRouter``."""
    from megatron.core.transformer.moe.moe_layer import MoESubmodules

    return hasattr(MoESubmodules, "router") or "router" in getattr(MoESubmodules, "__dataclass_fields__", {})


def _mla_takes_plain_q_proj() -> bool:
    """Whether MLA without a query LoRA (``q_lora_rank=None``) builds ``linear_q_proj`` as the spec gives it.

    From 0.19 (``transformer/mla_qk_norm_config.py``), with ``qk_layernorm`` on, MLA demands a fused
    norm+linear there, i.e. a norm on the query input that HF's ``q_proj`` does not have (and that only
    Transformer Engine provides).
    """
    import importlib.util

    return importlib.util.find_spec("megatron.core.transformer.mla_qk_norm_config") is None


def _dist_checkpointing_load_takes(name: str) -> Callable[[], bool]:
    """Whether ``dist_checkpointing.load`` takes the keyword ``name`` (``common_strategy``: up to 0.16, which
    still kept the common state in ``common.pt``; 0.17+ keep it inside the DCP files and dropped the keyword)."""
    def check() -> bool:
        from megatron.core.dist_checkpointing import serialization

        return name in inspect.signature(serialization.load).parameters

    return check


def _importable(module: str, name: str) -> Callable[[], bool]:
    """Whether ``from module import name`` works in the installed MCore (a deleted class or module: False)."""
    def check() -> bool:
        import importlib

        try:
            return getattr(importlib.import_module(module), name, None) is not None
        except ImportError:
            return False

    return check


def _gpt_model_deprecated() -> bool:
    """Whether ``GPTModel`` announces its deprecation when built (0.19: "GPTModel IS DEPRECATED ...")."""
    if not has_feature("gpt_model"):
        return False
    from megatron.core.models.gpt import GPTModel

    return "GPTModel IS DEPRECATED" in inspect.getsource(GPTModel.__init__)


def _model_classes_build_yarn() -> bool:
    """Whether every model class the installed MCore has (GPTModel, HybridModel) builds a ``YarnRotaryEmbedding``
    for ``position_embedding_type="yarn"``, read from the ``yarn_*`` attributes of the config (GPTModel: 0.15+)."""
    import importlib

    classes = []
    for module, name in MODEL_CLASS_SOURCES.values():
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return bool(classes) and all("yarn_rotary_scaling_factor" in inspect.getsource(c.__init__) for c in classes)


def expert_data_parallel_rank() -> int:
    """This rank's index among the ranks that hold the same experts.

    ``parallel_state.get_expert_data_parallel_rank`` from 0.10; ``get_data_modulo_expert_parallel_rank``
    before (feature ``expert_data_parallel_rank``).
    """
    from megatron.core import parallel_state as ps

    if has_feature("expert_data_parallel_rank"):
        return ps.get_expert_data_parallel_rank()
    return ps.get_data_modulo_expert_parallel_rank()


def _has_parallel_state_function(name: str) -> Callable[[], bool]:
    def check() -> bool:
        from megatron.core import parallel_state as ps

        return callable(getattr(ps, name, None))

    return check


FEATURES: dict[str, Callable[[], bool]] = {
    "expert_data_parallel_rank": _has_parallel_state_function("get_expert_data_parallel_rank"),
    "local_spec_normalization": _has_spec_arg("normalization"),
    "qk_layernorm": _has_fields("qk_layernorm"),
    "moe": _has_fields("num_moe_experts"),
    "moe_shared_experts": _has_fields("moe_shared_expert_intermediate_size"),
    "sliding_window": _has_fields("window_size"),
    "local_sliding_window": _local_attention_applies_window,
    "pipeline_stage_overrides": _has_fields("num_layers_in_first_pipeline_stage"),
    "inference_rng_tracker": _has_inference_rng_tracker,
    "local_attention_head_sizes": _local_attention_takes_head_sizes,
    "mla_plain_q_proj": _mla_takes_plain_q_proj,
    "local_experts_own_size": _local_experts_take_their_own_size,
    "moe_router_submodule": _moe_spec_takes_a_router,
    "local_attention_softmax_module": _local_attention_softmax_module,
    "softmax_scale": _has_fields("softmax_scale"),
    # GPT-OSS: attention sinks (softmax_type="learnable"), the clamped SwiGLU with its +1 on the linear half, YaRN
    "learnable_softmax_offset": _has_fields("softmax_type"),
    "clamped_glu": _has_fields("activation_func_clamp_value", "glu_linear_offset"),
    "yarn_rope": _model_classes_build_yarn,
    "dist_ckpt_common_strategy": _dist_checkpointing_load_takes("common_strategy"),
    # GPTModel -> HybridModel (bridge.hybrid_model): which model classes exist, and whether GPTModel is deprecated
    "gpt_model": _importable(*MODEL_CLASS_SOURCES["gpt"]),
    "hybrid_model": _importable(*MODEL_CLASS_SOURCES["hybrid"]),
    "gpt_model_deprecated": _gpt_model_deprecated,
    # MCore's own load-time GPT checkpoint -> HybridModel translation (0.19+; harness ckpt_compat, migrate-ckpt)
    "gpt_checkpoint_interop": _importable("megatron.core.dist_checkpointing.gpt_checkpoint_interop",
                                          "retarget_sharded_state_dict_to_gpt_checkpoint"),
    # torch (not MCore): torch.save can skip each zip record's CRC32 (torch 2.6+; bridge.megatron_ckpt.offline)
    "torch_save_crc32_option": _importable("torch.serialization", "set_crc32_options"),
    # torch.save can write a record's metadata and leave its data as a hole to fill (torch 2.6+; offline.py)
    "torch_save_skip_data": _importable("torch.serialization", "skip_data"),
}


def has_feature(name: str) -> bool:
    """Whether the installed megatron-core has the named feature (see :data:`FEATURES`)."""
    try:
        check = FEATURES[name]
    except KeyError:
        raise ConfigError(f"unknown feature {name!r}; known: {sorted(FEATURES)}") from None
    return check()
