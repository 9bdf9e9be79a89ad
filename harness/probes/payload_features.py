"""``features``: every feature row's static checks (:mod:`harness.features`), evaluated on the imported MCore.

The static matrix reads a revision's sources; this test asks the running release the same questions:

=================  ======================================================================
``field:X``        ``X`` is a field of ``dataclasses.fields`` of the config class
``class:C``        ``transformer_config.C`` is ``TransformerConfig`` or a dataclass subclass of it
``gpt_param:p``    ``p`` is a parameter of ``inspect.signature(GPTModel.__init__)``
``hybrid_param:p`` ``p`` is a parameter of ``inspect.signature(HybridModel.__init__)``
``layer_spec:fn``  ``gpt_layer_specs.fn`` exists and is callable with an inspectable signature
``module:m``       ``importlib.import_module(m)`` succeeds (so a module that exists but cannot be
                   imported here, e.g. for want of Transformer Engine, fails with the reason)
=================  ======================================================================

A feature passes when all its ``requires`` hold and, if it has ``any_of`` groups, one group holds.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from harness.checks import Check
from harness.features import FEATURES, Feature
from harness.probes.payload_common import FAILED, PASSED, Outcome, Row, describe_exception

__all__ = ["check_at_runtime", "probe_features"]


def _config_class(name: str) -> type | None:
    """``transformer_config.<name>`` if it is ``TransformerConfig`` or a dataclass subclass of it (as the
    static reading counts config classes), else None."""
    module = importlib.import_module("megatron.core.transformer.transformer_config")
    cls = getattr(module, name, None)
    ok = isinstance(cls, type) and dataclasses.is_dataclass(cls) and issubclass(cls, module.TransformerConfig)
    return cls if ok else None


def check_at_runtime(check: Check) -> tuple[bool, str]:
    """``(holds, why)`` for one check against the imported MCore."""
    try:
        if check.kind == "field":
            cls = _config_class(check.config_class)
            if cls is None:
                return False, f"no config class {check.config_class}"
            ok = check.name in {f.name for f in dataclasses.fields(cls)}
            return ok, "" if ok else f"{check.config_class} has no field {check.name!r}"
        if check.kind == "class":
            ok = _config_class(check.name) is not None
            return ok, "" if ok else f"transformer_config has no config class {check.name}"
        if check.kind == "gpt_param":
            from megatron.core.models.gpt.gpt_model import GPTModel

            ok = check.name in inspect.signature(GPTModel.__init__).parameters
            return ok, "" if ok else f"GPTModel.__init__ has no parameter {check.name!r}"
        if check.kind == "hybrid_param":
            from megatron.core.models.hybrid.hybrid_model import HybridModel

            ok = check.name in inspect.signature(HybridModel.__init__).parameters
            return ok, "" if ok else f"HybridModel.__init__ has no parameter {check.name!r}"
        if check.kind == "layer_spec":
            specs = importlib.import_module("megatron.core.models.gpt.gpt_layer_specs")
            fn = getattr(specs, check.name, None)
            if not callable(fn):
                return False, f"gpt_layer_specs has no function {check.name}"
            inspect.signature(fn)
            return True, ""
        assert check.kind == "module", check
        importlib.import_module(check.name)
        return True, ""
    except Exception as e:  # noqa: BLE001 - a probe reports every failure as data
        return False, f"{describe_exception(e)}"


def _feature_row(feature: Feature) -> Row:
    results = {str(c): check_at_runtime(c) for c in feature.checks()}
    groups = [{str(c): check_at_runtime(c) for c in group} for group in feature.groups()]
    required_ok = all(ok for ok, _ in results.values())
    group_ok = not groups or any(all(ok for ok, _ in g.values()) for g in groups)
    checked = {**results, **{k: v for g in groups for k, v in g.items()}}
    failing = [f"{name}: {why}" for name, (ok, why) in checked.items() if not ok]
    metrics = {"checks": len(checked), "checks_passed": sum(ok for ok, _ in checked.values())}
    if required_ok and group_ok:
        held = ", ".join(k for k, (ok, _) in checked.items() if ok)
        extra = f" (alternatives not present: {'; '.join(failing)})" if failing else ""
        return Row(PASSED, f"holds at run time: {held}{extra}", metrics)
    return Row(FAILED, "does not hold at run time: " + "; ".join(failing), metrics)


def probe_features() -> Outcome:
    """One row per feature of :data:`harness.features.FEATURES`."""
    return Outcome({feature.name: _feature_row(feature) for feature in FEATURES})
