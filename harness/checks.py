"""One requirement on a revision's API, written as a short string, and how to check it.

=======================================  ===============================================
``field:window_size``                    a ``TransformerConfig`` field
``field:MLATransformerConfig.rope_type``  a field of a config subclass (inherited ones count)
``class:MLATransformerConfig``           a config class in ``transformer_config.py``
``gpt_param:rope_scaling``               a ``GPTModel.__init__`` parameter
``hybrid_param:hybrid_layer_pattern``    a ``HybridModel.__init__`` parameter (absent class: fails)
``layer_spec:get_gpt_decoder_block_spec`` a function of ``models/gpt/gpt_layer_specs.py``
``module:megatron.core.transformer.moe``  an MCore module or package
=======================================  ===============================================
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.introspect import CONFIG_CLASS, Introspection

__all__ = ["CHECK_KINDS", "Check", "check_satisfied", "parse_check"]

CHECK_KINDS = ("field", "class", "gpt_param", "hybrid_param", "layer_spec", "module")


@dataclass(frozen=True)
class Check:
    """A parsed check; ``str(check)`` gives back the string form."""

    kind: str
    name: str
    config_class: str = CONFIG_CLASS

    def __str__(self) -> str:
        if self.kind == "field" and self.config_class != CONFIG_CLASS:
            return f"field:{self.config_class}.{self.name}"
        return f"{self.kind}:{self.name}"


def parse_check(text: str) -> Check:
    """``"field:X.y"`` -> ``Check("field", "y", "X")``.

    Raises:
        ValueError: unknown kind or empty name.
    """
    kind, sep, name = text.partition(":")
    if not sep or kind not in CHECK_KINDS or not name:
        raise ValueError(f"malformed check {text!r}: expected KIND:NAME with KIND in {CHECK_KINDS}")
    if kind == "field" and "." in name:
        cls, _, fname = name.rpartition(".")
        return Check("field", fname, cls)
    return Check(kind, name)


def check_satisfied(check: Check, intro: Introspection) -> bool:
    """Whether the revision provides what ``check`` asks for."""
    if check.kind == "field":
        fields = intro.config_fields(check.config_class)
        return fields is not None and check.name in fields
    if check.kind == "class":
        return intro.config_fields(check.name) is not None
    if check.kind == "gpt_param":
        return check.name in intro.gpt_model_params
    if check.kind == "hybrid_param":
        hybrid = intro.model_class("HybridModel")
        return hybrid is not None and check.name in hybrid["params"]
    if check.kind == "layer_spec":
        return check.name in intro.layer_specs
    assert check.kind == "module", check
    return intro.has_module(check.name)
