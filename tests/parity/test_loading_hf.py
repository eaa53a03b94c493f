"""gpt2_lora.loading against HF transformers: an HF folder as --init_checkpoint or --base_checkpoint gives
transformers' own logits."""

from __future__ import annotations

import pytest
import torch

from gpt2_lora.errors import UserError
from gpt2_lora.loading import ModelSpec, load_model, resolve_config
from helpers import ids, our_logits


def test_hf_folders_as_init_or_base(tiny_base, tiny_adapter):
    import transformers

    hf = transformers.GPT2LMHeadModel.from_pretrained(tiny_base).eval()
    tokens = ids()
    with torch.no_grad():
        expected = hf(tokens).logits
    for spec in (ModelSpec(init_checkpoint=str(tiny_base)), ModelSpec(base_checkpoint=str(tiny_base))):
        model = load_model(spec)  # no --model_card: the folder's config.json
        assert model.config.n_embd == 32 and model.config.lora_attn_dim == 0
        torch.testing.assert_close(our_logits(model, tokens), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match=r"--model_card gpt2.sm and .*config.json are different models"):
        resolve_config(ModelSpec(init_checkpoint=str(tiny_base), model_card="gpt2.sm"))
    with pytest.raises(UserError, match=r"--init_checkpoint .*missing: no such file or folder"):
        resolve_config(ModelSpec(init_checkpoint=str(tiny_base / "missing")))
