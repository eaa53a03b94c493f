"""training.step's loss against upstream's own GPT2LMModel.forward loss (src/model.py from the microsoft/LoRA
checkout) on upstream's padded FT_Dataset batches, with and without label smoothing: the same weights give the
same loss. (tests/test_step.py holds it against the formula written out.)"""

from __future__ import annotations

import pytest
import torch

from gpt2_lora.training.batching import Layout, collate
from gpt2_lora.training.step import LossModel
from helpers import TINY, copy_task, tiny_model, write_encoded

pytestmark = pytest.mark.upstream


@pytest.mark.parametrize("label_smooth", [0.0, 0.1])
def test_loss_equals_upstreams_forward_loss(upstream, tmp_path, label_smooth):
    pytest.importorskip("loralib")
    up = upstream("model")
    ours = tiny_model().eval()
    sizes = {k: v for k, v in TINY.items() if k != "vocab_size"}
    theirs = up.GPT2LMModel(up.GPT2Config(vocab_size_or_config_json_file=TINY["vocab_size"], lora_attn_dim=4,
                                          lora_attn_alpha=8, **sizes)).eval()
    missing = theirs.load_state_dict(ours.state_dict(), strict=False).missing_keys
    assert all(k.startswith("lm_head.") or k.endswith(".attn.bias") for k in missing)  # tied head, mask buffers
    examples = copy_task(6, seed=5)
    dataset = upstream("data_utils").FT_Dataset(str(write_encoded(tmp_path / "train.jsonl", examples)), 6, 32)
    items = [dataset[i] for i in range(6)]
    inputs, targets, masks = (torch.stack([x[key] for x in items]) for key in ("input", "target", "mask"))
    with torch.no_grad():
        _, expected = theirs(inputs, lm_labels=targets, lm_mask=masks, label_smooth=label_smooth)
        batch = collate(Layout(examples, 32), list(range(6)), pad_multiple=8, select_multiple=8)
        got = LossModel(ours, label_smooth)(batch.input_ids, batch.index, batch.target, batch.weight)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
