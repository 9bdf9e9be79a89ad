"""The "GPTModel is gone" revision of issue 16: a release's tree with GPTModel deleted, as upstream would delete it.

:func:`delete_gpt_model` removes ``megatron/core/models/gpt/gpt_model.py`` and drops its export from
``megatron/core/models/gpt/__init__.py`` (layer specs and everything else stay). :func:`copy_without_gpt_model`
copies a prepared release (``megatron/`` and the ``megatron_core-*.dist-info``) and deletes GPTModel from the
copy, so the result is a ``path:`` revision (static scan, or ``prepare_revision("path:...")`` for probes).
:func:`mini_tree` writes a few-file MCore tree (config, GPTModel with 0.19's deprecation notice, HybridModel,
the hybrid stack's modules) for fast tests of the static matrix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["copy_without_gpt_model", "delete_gpt_model", "mini_tree"]

_GPT_INIT_EXPORT = "gpt_model import GPTModel"


def delete_gpt_model(tree: Path) -> Path:
    """Delete GPTModel from the MCore tree rooted at ``tree`` (holding ``megatron/``); returns ``tree``."""
    gpt = tree / "megatron" / "core" / "models" / "gpt"
    (gpt / "gpt_model.py").unlink()
    init = gpt / "__init__.py"
    if init.exists():
        init.write_text("".join(line for line in init.read_text().splitlines(keepends=True)
                                if _GPT_INIT_EXPORT not in line))
    return tree


def copy_without_gpt_model(release: Path, tree: Path) -> Path:
    """Copy the prepared release at ``release`` (``megatron/``, dist-info) to ``tree`` and delete GPTModel there."""
    shutil.copytree(release / "megatron", tree / "megatron")
    for info in release.glob("megatron_core-*.dist-info"):
        shutil.copytree(info, tree / info.name)
    return delete_gpt_model(tree)


_FILES = {
    "megatron/core/package_info.py": "MAJOR = 0\nMINOR = {minor}\nPATCH = {patch}\nPRE_RELEASE = ''\n",
    "megatron/core/transformer/transformer_config.py": (
        "from dataclasses import dataclass\n\n\n@dataclass\nclass TransformerConfig:\n"
        "    num_layers: int = 0\n    hidden_size: int = 0\n"),
    "megatron/core/models/gpt/__init__.py": "from .gpt_model import GPTModel\n",
    "megatron/core/models/gpt/gpt_layer_specs.py": "def get_gpt_layer_local_spec(num_experts=None):\n    pass\n",
    "megatron/core/models/gpt/gpt_model.py": (
        "import logging\n\nlogger = logging.getLogger(__name__)\n\n\nclass GPTModel:\n"
        "    def __init__(self, config, transformer_layer_spec, vocab_size, max_sequence_length):\n"
        "        logger.warning(\n"
        "            \"GPTModel IS DEPRECATED. GPTModel is only accepting critical bug fixes, \"\n"
        "            \"no new features.\"\n        )\n\n"
        "    def forward(self, input_ids, inference_params=None):\n"
        "        logger.warning(\"inference_params is deprecated\")\n"),
    "megatron/core/models/hybrid/__init__.py": "",
    "megatron/core/models/hybrid/hybrid_model.py": (
        "class HybridModel:\n    def __init__(self, config, hybrid_stack_spec, vocab_size, max_sequence_length,\n"
        "                 hybrid_layer_pattern=None, vp_stage=None):\n        pass\n"),
    "megatron/core/models/hybrid/hybrid_block.py": "class HybridStack:\n    pass\n",
    "megatron/core/ssm/__init__.py": "",
    "megatron/core/ssm/mlp_layer.py": "class MLPLayer:\n    pass\n",
}


def mini_tree(root: Path, *, version: str = "0.19.2", gpt_deprecated: bool = True, hybrid: bool = True) -> Path:
    """A few-file MCore tree of ``version`` (0.x.y) at ``root`` (see the module docstring); ``hybrid=False``
    leaves out the hybrid modules (a pre-0.18 tree), ``gpt_deprecated=False`` GPTModel's deprecation notice."""
    _, minor, patch = version.split(".")
    for rel, text in _FILES.items():
        if not hybrid and ("/hybrid/" in rel or "/ssm/" in rel):
            continue
        if not gpt_deprecated:
            text = text.replace("GPTModel IS DEPRECATED. ", "")
        text = text.replace("{minor}", minor).replace("{patch}", patch)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
