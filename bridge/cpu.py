"""The documented CPU patches: the only place :mod:`bridge` changes MCore behaviour.

MCore's local (non-Transformer-Engine) GPT path is pure PyTorch, but a few places
assume CUDA. On a machine WITHOUT CUDA, :func:`apply` makes them run on CPU (patches
1-6). Patches 7 and 8 are about a missing Transformer Engine, not about CUDA: they are
applied wherever ``transformer_engine`` is not installed, GPU machines included (without
them the local spec cannot build MoE or MLA layers there either). Every patch is listed
here with the MCore error it fixes (measured on 0.8.0, 0.12.3, 0.16.1; see ``docs/cpu.md``):

1. ``torch.cuda.current_device()`` used as a device (rotary ``inv_freq``, global
   memory buffer, TP gather and p2p buffers) -> "Torch not compiled with CUDA
   enabled". Patch: it returns ``torch.device("cpu")``.
2. The CUDA RNG tracker (``get_cuda_rng_tracker().fork()`` in attention;
   ``model_parallel_cuda_manual_seed``) needs CUDA RNG state. Patch: install a
   tracker whose ``add``/``fork`` are no-ops; seeding is ``torch.manual_seed``.
3. ``get_default_causal_mask`` / ``get_sliding_window_causal_mask`` build on
   ``device="cuda"``. Patch: the same masks on CPU (in ``transformer.utils`` and in
   ``fusions.fused_softmax``, which imported them by name).
4. ``torch.cuda.synchronize()`` in p2p communication and checkpoint saving. Patch:
   a no-op.
5. ``Tensor.cuda()`` on parameters (tied embeddings with PP > 1: the output layer copy is
   moved with ``weight.data.cuda()`` before the first/last-stage all-reduce in
   ``LanguageModule.setup_embeddings_and_output_layer``). Patch: ``Tensor.cuda`` returns
   the tensor itself (on a CPU-only torch it could only raise).
6. ``device="cuda"`` tensors created inside the pipeline schedules. Not patched
   globally: wrap the call in :func:`cpu_device_mode`.
7. Without Transformer Engine (0.16.1): ``transformer.moe.moe_utils`` calls
   ``te_general_gemm`` in the router's gating linear but defines it only when TE imports
   -> "NameError: name 'te_general_gemm' is not defined" in every MoE forward. Patch:
   define it as ``None``, which selects MCore's own ``torch.mm`` branch.
8. Without Transformer Engine (0.16.1): ``transformer.multi_latent_attention`` has
   ``HAVE_TE = True`` (``extensions.transformer_engine`` imports with a ``MagicMock``
   standing in for TE), then ``isinstance(self.linear_proj, TELinear)`` with that mock
   -> "TypeError: isinstance() arg 2 must be a type" when building any MLA layer.
   Patch: ``HAVE_TE = False`` in that module.

Not a patch: ``HybridStack`` (0.18, 0.19) builds its final norm with ``TENorm`` unconditionally, which raises
"Transformer Engine is not installed" without TE. The bridge's local hybrid stack spec needs no patch for it:
its stack module (:func:`bridge.hybrid_model.local_hybrid_stack`) is built with ``post_layer_norm=False``, so
``TENorm`` is never called, and builds the final norm from the spec (the local norm, or the family's own).

Patches are idempotent and recorded in :data:`APPLIED`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

from bridge._logging import get_logger

__all__ = ["APPLIED", "apply", "cpu_device_mode", "needs_cpu_patches"]

log = get_logger("cpu")
APPLIED: list[str] = []


def needs_cpu_patches() -> bool:
    """True on machines where CUDA is unavailable."""
    return not torch.cuda.is_available()


def _causal_mask(sq: int, skv: int | None = None) -> torch.Tensor:
    skv = sq if skv is None else skv
    return torch.triu(torch.ones(sq, skv, dtype=torch.bool), diagonal=1 + skv - sq)


def _sliding_window_mask(sq: int, skv: int, window_size: tuple[int, int]) -> torch.Tensor:
    m = torch.ones(sq, skv, dtype=torch.bool)
    mu = torch.triu(m, diagonal=skv - sq - window_size[0])
    ml = torch.tril(mu, diagonal=skv - sq + window_size[1])
    return ~ml


def _install_noop_rng_tracker() -> None:
    from megatron.core.tensor_parallel import random as mrandom

    class _NoopTracker(mrandom.CudaRNGStatesTracker):
        """Tracker whose add/fork do nothing: CPU randomness comes from torch.manual_seed."""

        def add(self, name, seed):  # noqa: D401 - MCore signature
            self.states_[name] = None
            self.seeds_.add(seed)

        @contextlib.contextmanager
        def fork(self, name=None):  # type: ignore[override]
            yield

        def get_states(self):
            return {}

        def set_states(self, states):
            return None

    mrandom._CUDA_RNG_STATE_TRACKER = _NoopTracker()
    if hasattr(mrandom, "_CUDA_RNG_STATE_TRACKER_INITIALIZED"):
        mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True


def _patch_missing_transformer_engine() -> None:
    """Patches 7 and 8 (module docstring); only where ``transformer_engine`` is not installed."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("transformer_engine") is not None:
        return
    for modname, name, value in (
        ("megatron.core.transformer.moe.moe_utils", "te_general_gemm", None),
        ("megatron.core.transformer.multi_latent_attention", "HAVE_TE", False),
    ):
        try:
            mod = importlib.import_module(modname)
        except ImportError:  # pragma: no cover - releases without MoE / MLA
            continue
        if name == "HAVE_TE" or not hasattr(mod, name):
            setattr(mod, name, value)


def apply(seed: int = 1234) -> None:
    """Apply the patches: 7-8 wherever Transformer Engine is missing, the others only without CUDA.
    Safe to call repeatedly."""
    if "no_transformer_engine" not in APPLIED:
        _patch_missing_transformer_engine()
        APPLIED.append("no_transformer_engine")
    if not needs_cpu_patches():
        return
    torch.manual_seed(seed)
    if "current_device" not in APPLIED:
        torch.cuda.current_device = lambda: torch.device("cpu")  # type: ignore[assignment]
        torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        APPLIED.append("current_device")
        APPLIED.append("synchronize")
        APPLIED.append("tensor_cuda")
    # The tracker is reset by MCore (e.g. destroy_model_parallel); re-install each time.
    _install_noop_rng_tracker()
    if "rng_tracker" not in APPLIED:
        APPLIED.append("rng_tracker")
    if "masks" not in APPLIED:
        import importlib

        for modname in ("megatron.core.transformer.utils", "megatron.core.fusions.fused_softmax"):
            try:
                mod = importlib.import_module(modname)
            except ImportError:  # pragma: no cover - very old releases
                continue
            if getattr(mod, "get_default_causal_mask", None) is not None:
                mod.get_default_causal_mask = _causal_mask
            if getattr(mod, "get_sliding_window_causal_mask", None) is not None:
                mod.get_sliding_window_causal_mask = _sliding_window_mask
        APPLIED.append("masks")
    log.debug("CPU patches in force: %s", APPLIED)


class _CudaToCpuMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        dev = kwargs.get("device")
        if dev is not None and torch.device(dev).type == "cuda":
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


@contextlib.contextmanager
def cpu_device_mode() -> Iterator[None]:
    """Within the block, tensors requested on ``cuda`` are made on CPU (for MCore's schedules)."""
    if not needs_cpu_patches():
        yield
        return
    with _CudaToCpuMode():
        yield
