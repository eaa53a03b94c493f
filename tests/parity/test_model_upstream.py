"""GPT2LMModel against upstream microsoft/LoRA src/model.py (run from the checkout): the same parameter names
and shapes, upstream's DDP-saved state dict loaded, the same logits, upstream's past against our KV cache."""

from __future__ import annotations

import re

import pytest
import torch

from gpt2_lora.model import GPT2Config, GPT2LMModel, KVCache
from helpers import ids as random_ids, randomize_lora

pytestmark = pytest.mark.upstream


@pytest.fixture(scope="module")
def ids():
    return random_ids(50257, (3, 24), seed=1)


@pytest.fixture(scope="module")
def upstream_model_module(upstream):
    pytest.importorskip("loralib")
    return upstream("model")


def test_matches_upstream_model(upstream_model_module, ids):
    up = upstream_model_module
    kwargs = dict(n_embd=64, n_layer=2, n_head=4, n_positions=128, n_ctx=128, lora_attn_dim=4, lora_attn_alpha=32)
    torch.manual_seed(3)
    theirs = up.GPT2LMModel(up.GPT2Config(vocab_size_or_config_json_file=50257, **kwargs)).eval()
    ours = GPT2LMModel(GPT2Config(vocab_size=50257, **kwargs)).eval()
    expected_keys = {k: tuple(v.shape) for k, v in theirs.state_dict().items()
                     if not k.startswith("lm_head.") and not re.search(r"\.attn\.bias$", k)}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected_keys
    randomize_lora(theirs)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    # Load upstream's full state the way gpt2_beam.py does: a DDP-saved {'model_state_dict'} file.
    report = ours.load_weight({"model_state_dict": {"module." + k: v for k, v in theirs.state_dict().items()}})
    assert report.kind == "base+lora" and not report.unexpected
    with torch.no_grad():
        expected, _ = theirs(ids)
        torch.testing.assert_close(ours(ids), expected, atol=1e-5, rtol=0)
        # upstream's incremental decoding (past concatenation) vs our KV cache
        logits, past = theirs(ids[:, :20])
        cache = KVCache(ours.config, 3, 24)
        ours(ids[:, :20], cache=cache)
        for t in range(20, 24):
            logits, past = theirs(ids[:, t:t + 1], past=past)
            torch.testing.assert_close(ours(ids[:, t:t + 1], cache=cache), logits, atol=1e-5, rtol=0)
