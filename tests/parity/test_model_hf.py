"""GPT2LMModel against HF transformers' GPT-2: the logits of every HF checkpoint layout (conftest's hf_dir)."""

from __future__ import annotations

import pytest
import torch

from gpt2_lora.checkpoint import load_checkpoint_file
from gpt2_lora.model import GPT2Config, GPT2LMModel
from helpers import ids as random_ids


@pytest.fixture(scope="module")
def ids():
    return random_ids(50257, (3, 24), seed=1)


@pytest.mark.parametrize("source", ["model.safetensors", "bin/pytorch_model.bin", "legacy.bin", "."])
def test_hf_checkpoint_logits_match(hf_dir, ids, source):
    path, hf = hf_dir
    model = GPT2LMModel(GPT2Config.from_hf_config(path)).eval()
    report = model.load_weight(load_checkpoint_file(path / source))
    assert report.kind == "base" and not report.unexpected and model.base_loaded
    with torch.no_grad():
        expected = hf(ids).logits
        got = model(ids)
    assert got.shape == (3, 24, 50257)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
