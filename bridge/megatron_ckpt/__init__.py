"""HF <-> Megatron-LM ``torch_dist`` checkpoints (``dist_checkpointing``), resharded on load.

* :mod:`~bridge.megatron_ckpt.layout`: the directory layout (tracker, ``iter_*``) and mcore-compat's record;
* :mod:`~bridge.megatron_ckpt.args`: Megatron-LM's ``args`` in ``common.pt``, from and to a provider;
* :mod:`~bridge.megatron_ckpt.writer` / :mod:`~bridge.megatron_ckpt.reader`: save and load built chunks;
* :mod:`~bridge.megatron_ckpt.api`: ``import_ckpt``, ``export_ckpt``, ``load_checkpoint_model``.
"""

from __future__ import annotations

from bridge.megatron_ckpt.api import export_ckpt, import_ckpt, load_checkpoint_model
from bridge.megatron_ckpt.writer import save_megatron_model

__all__ = ["export_ckpt", "import_ckpt", "load_checkpoint_model", "save_megatron_model"]
