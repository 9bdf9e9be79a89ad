"""What each bridge family needs from MCore, derived from what the bridge actually does.

The harness reads these (through :func:`bridge.registry.all_requirements`) to decide, without importing
MCore, whether a revision supports a family. Nothing here is a hand-kept list: every
set is computed by running the family's provider on its representative HF configs and
recording the ``TransformerConfig`` keyword arguments, ``GPTModel`` keyword arguments
and layer-spec functions it would use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Requirements"]


@dataclass(frozen=True)
class Requirements:
    """MCore API one family (or feature) uses.

    Attributes:
        family: family or feature name, e.g. ``"llama"`` or ``"llama:rope_scaling"``.
        config_fields: ``TransformerConfig`` (or subclass) fields the provider sets to a value
            that needs the field (anything but ``None``/``False``).
        optional_config_fields: fields it sets to ``None``/``False`` (switched off); a release
            without them is fine, :mod:`bridge.compat` drops them.
        config_class: the config class the provider instantiates (``TransformerConfig``
            or e.g. ``MLATransformerConfig``).
        gpt_model_params: keyword arguments passed to ``GPTModel.__init__``.
        layer_spec_functions: functions of ``models/gpt/gpt_layer_specs.py`` it calls.
        modules: dotted MCore modules it imports (e.g. ``megatron.core.transformer.moe``).
        renames: optional known renames ``{new_name: old_name}`` the compat layer handles.
    """

    family: str
    config_fields: frozenset[str]
    config_class: str = "TransformerConfig"
    optional_config_fields: frozenset[str] = frozenset()
    gpt_model_params: frozenset[str] = frozenset()
    layer_spec_functions: frozenset[str] = frozenset()
    modules: frozenset[str] = frozenset()
    renames: tuple[tuple[str, str], ...] = field(default=())

