"""``bridge.models._yarn``: HF's YaRN rope parameters -> MCore's ``yarn_*`` config attributes give bit-identical
frequencies and the same cos/sin factor (MCore's ``YarnRotaryEmbedding`` against transformers'
``_compute_yarn_parameters``), truncated or not, with or without mscale/mscale_all_dim; what MCore cannot take
is refused."""

from __future__ import annotations

import pytest
import torch
from transformers import GptOssConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from bridge.errors import ConfigError
from bridge.models._yarn import YarnRope, with_yarn, yarn_rope

BASE = dict(vocab_size=32, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, max_position_embeddings=4096)
YARN = dict(rope_type="yarn", rope_theta=150000.0, factor=32.0, original_max_position_embeddings=128)


@pytest.mark.parametrize("extra", [
    dict(truncate=False, beta_fast=32.0, beta_slow=1.0),  # GPT-OSS's
    dict(),  # truncate defaults to True; betas to 32 / 1
    dict(mscale=0.707, mscale_all_dim=1.0),
    dict(mscale=1.0),  # one of the two: HF falls back to 0.1 ln(factor) + 1
], ids=["gpt_oss", "defaults", "mscale_pair", "mscale_alone"])
def test_frequencies_and_factor_are_bit_identical(extra: dict, fresh_parallel_state) -> None:
    from bridge import cpu

    cpu.apply()
    from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import (
        YarnRotaryEmbedding, _yarn_get_concentration_factor,
    )

    cfg = GptOssConfig(**BASE, rope_parameters={**YARN, **extra})
    hf_inv_freq, hf_factor = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
    yarn = yarn_rope(cfg)
    mcore = YarnRotaryEmbedding(kv_channels=16, rotary_base=150000.0, scaling_factor=yarn.scaling_factor,
                                original_max_position_embeddings=yarn.original_max_position_embeddings,
                                beta_fast=yarn.beta_fast, beta_slow=yarn.beta_slow, mscale=yarn.mscale,
                                mscale_all_dim=yarn.mscale_all_dim,
                                correction_range_round_to_int=yarn.correction_range_round_to_int,
                                use_cpu_initialization=True)
    emb, factor = mcore.get_emb(64)
    positions = torch.arange(64, dtype=torch.float32)
    assert torch.equal(emb[:, 0, 0, :8], positions[:, None] * hf_inv_freq[None, :])
    assert torch.equal(emb[:, 0, 0, 8:], emb[:, 0, 0, :8])
    assert factor == hf_factor == _yarn_get_concentration_factor(yarn.scaling_factor, yarn.mscale, yarn.mscale_all_dim)


def test_truncation_matters_here() -> None:
    """The two correction ranges differ for this size, so the parametrised test above tells them apart."""
    off, on = (ROPE_INIT_FUNCTIONS["yarn"](GptOssConfig(**BASE, rope_parameters={**YARN, "truncate": t}), "cpu")[0]
               for t in (False, True))
    assert not torch.equal(off, on)


def test_config_attributes_are_the_names_mcore_reads() -> None:
    class Config:
        pass

    attrs = vars(with_yarn(Config(), YarnRope(scaling_factor=4.0, original_max_position_embeddings=64)))
    assert attrs == {"yarn_rotary_scaling_factor": 4.0, "yarn_original_max_position_embeddings": 64,
                     "yarn_beta_fast": 32.0, "yarn_beta_slow": 1.0, "yarn_mscale": 1.0, "yarn_mscale_all_dim": 0.0,
                     "yarn_correction_range_round_to_int": True}


@pytest.mark.parametrize("extra, match", [
    (dict(attention_factor=1.5), "attention_factor"),
    (dict(partial_rotary_factor=0.5), "partial_rotary_factor"),
    (dict(original_max_position_embeddings=None), "original_max_position_embeddings"),
])
def test_what_mcore_cannot_take_is_refused(extra: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        yarn_rope({**BASE, "rope_parameters": {**YARN, **extra}})
