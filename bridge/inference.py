"""A plain forward pass through this rank's model chunks, and greedy/sampled decoding on top of it.

Works for PP = 1 and PP > 1 (activations move stage to stage with point-to-point
send/recv; no MCore schedule needed). :func:`forward_logits` returns the logits on the last
pipeline stage over the real vocabulary (padding rows removed) and ``None`` elsewhere.

Vocabulary padding: a model built by :meth:`GPTModelProvider.provide_distributed_model` carries its
:class:`~bridge.parallel.vocab.VocabPadding` (:func:`record_vocab_padding`), so :func:`forward_logits`
strips exactly the padded ids without being told the vocabulary, and :func:`sample_next_tokens` /
:func:`generate` mask them to ``-inf``: a padded id can never be picked, whatever its logit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from bridge.errors import ConfigError, ParallelLayoutError
from bridge.parallel.vocab import VocabPadding, mask_padded_logits, strip_padded_logits

__all__ = [
    "causal_mask",
    "forward_logits",
    "generate",
    "record_vocab_padding",
    "sample_next_tokens",
    "vocab_padding_of",
]

#: The attribute of a built chunk holding its :class:`VocabPadding` (plain data set by the bridge).
_PADDING_ATTR = "bridge_vocab_padding"


def causal_mask(batch: int, seq: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """MCore's boolean attention mask ``[B, 1, S, S]``: True means *masked*."""
    m = torch.triu(torch.ones(seq, seq, dtype=torch.bool, device=device), diagonal=1)
    return m.expand(batch, 1, seq, seq).contiguous()


def _chunks(model: Any) -> list[torch.nn.Module]:
    return list(model) if isinstance(model, (list, tuple)) else [model]


def _unwrapped(chunk: torch.nn.Module) -> torch.nn.Module:
    while hasattr(chunk, "module") and isinstance(chunk.module, torch.nn.Module) and not hasattr(chunk, _PADDING_ATTR):
        chunk = chunk.module
    return chunk


def record_vocab_padding(model: Any, padding: VocabPadding) -> None:
    """Remember on each built chunk how its vocabulary is padded (read by :func:`vocab_padding_of`)."""
    for chunk in _chunks(model):
        setattr(_unwrapped(chunk), _PADDING_ATTR, padding)


def vocab_padding_of(model: Any) -> VocabPadding | None:
    """The :class:`VocabPadding` recorded on ``model`` (through DDP-style ``.module`` wrappers), or None."""
    for chunk in _chunks(model):
        found = getattr(_unwrapped(chunk), _PADDING_ATTR, None)
        if found is not None:
            return found
    return None


def _vocab(model: Any, vocab_size: int | None) -> int | None:
    if vocab_size is not None:
        return vocab_size
    padding = vocab_padding_of(model)
    return None if padding is None else padding.vocab_size


@torch.no_grad()
def _forward(model: Any, input_ids: torch.Tensor) -> torch.Tensor | None:
    """The model's own logits ``[B, S, padded vocab]`` on the last stage (``None`` on other stages).

    With a virtual pipeline a rank holds several chunks, in model order (chunk ``v`` of rank ``r`` is segment
    ``v * PP + r``): the activations go rank 0 -> ... -> PP-1 for chunk 0, then back to rank 0 for chunk 1, and so
    on, so each chunk receives from the previous rank (rank PP-1's previous chunk, for rank 0) and sends to the next.
    """
    from megatron.core import parallel_state as ps

    chunks = _chunks(model)
    device = next(chunks[0].parameters()).device
    input_ids = input_ids.to(device)
    b, s = input_ids.shape
    position_ids = torch.arange(s, device=device).unsqueeze(0).expand(b, s)
    mask = causal_mask(b, s, device)
    pp = ps.get_pipeline_model_parallel_world_size()
    first, last = ps.is_pipeline_first_stage(), ps.is_pipeline_last_stage()
    if pp == 1 and len(chunks) > 1:
        raise ParallelLayoutError(f"expected one model chunk without pipeline parallelism, found {len(chunks)}; "
                                  "virtual pipeline chunks need pipeline_model_parallel_size > 1")
    out = None
    for v, chunk in enumerate(chunks):
        chunk.eval()
        if pp > 1 and not (first and v == 0):
            hidden = torch.empty(s, b, chunk.config.hidden_size, dtype=chunk.config.params_dtype, device=device)
            dist.recv(hidden, src=ps.get_pipeline_model_parallel_prev_rank())
            _set_input(chunk, hidden)
        out = chunk(input_ids, position_ids, mask)
        if pp > 1 and not (last and v == len(chunks) - 1):
            dist.send(out.contiguous(), dst=ps.get_pipeline_model_parallel_next_rank())
            out = None
    return out


def forward_logits(model: Any, input_ids: torch.Tensor, *, vocab_size: int | None = None) -> torch.Tensor | None:
    """Logits ``[B, S, V]`` of ``input_ids`` on the last stage (``None`` on other stages), ``V`` the real vocabulary.

    ``vocab_size`` defaults to the vocabulary recorded on the model (:func:`record_vocab_padding`); a model
    without a record and no ``vocab_size`` gives the model's own width.
    """
    out = _forward(model, input_ids)
    vocab = _vocab(model, vocab_size)
    if out is None or vocab is None:
        return out
    return strip_padded_logits(out, vocab)


def sample_next_tokens(logits: torch.Tensor, *, vocab_size: int, temperature: float = 0.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Token ids ``[B]`` from the last position of ``logits`` ``[B, S, W]`` (or ``[B, W]``), ``W >= vocab_size``.

    Ids from ``vocab_size`` on (vocabulary padding) are masked to ``-inf`` first, so they are never picked.
    ``temperature == 0`` is greedy (argmax); otherwise a draw from ``softmax(logits / temperature)``.
    """
    if temperature < 0:
        raise ConfigError(f"expected temperature >= 0 (0: greedy), found {temperature}")
    last = logits[:, -1] if logits.dim() == 3 else logits
    last = mask_padded_logits(last.float(), vocab_size)
    if temperature == 0:
        return last.argmax(dim=-1)
    probs = torch.softmax(last / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Any, input_ids: torch.Tensor, *, max_new_tokens: int, vocab_size: int | None = None,
             temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """``input_ids`` followed by ``max_new_tokens`` tokens picked by :func:`sample_next_tokens` (no KV cache: the
    whole sequence runs each step). Every rank calls this and gets the same ids ``[B, S + max_new_tokens]``."""
    from megatron.core import parallel_state as ps

    vocab = _vocab(model, vocab_size)
    ids = input_ids
    for _ in range(max_new_tokens):
        logits = _forward(model, ids)
        nxt = torch.empty(ids.shape[0], dtype=torch.long, device=ids.device)
        if logits is not None:
            nxt = sample_next_tokens(logits, vocab_size=vocab if vocab is not None else logits.shape[-1],
                                     temperature=temperature, generator=generator).to(ids.device)
        if ps.get_tensor_model_parallel_world_size() > 1:  # one draw per TP group (each rank has its own RNG)
            dist.broadcast(nxt, src=ps.get_tensor_model_parallel_src_rank(),
                           group=ps.get_tensor_model_parallel_group())
        if ps.get_pipeline_model_parallel_world_size() > 1:  # the last stage tells the others
            dist.broadcast(nxt, src=ps.get_pipeline_model_parallel_last_rank(),
                           group=ps.get_pipeline_model_parallel_group())
        ids = torch.cat([ids, nxt.unsqueeze(1)], dim=1)
    return ids


def _set_input(chunk: torch.nn.Module, hidden: torch.Tensor) -> None:
    while hasattr(chunk, "module") and not hasattr(chunk, "set_input_tensor"):
        chunk = chunk.module
    chunk.set_input_tensor(hidden)
