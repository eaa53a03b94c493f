"""training.batching against upstream's own data_utils.FT_Dataset (imported from the microsoft/LoRA checkout):
the padded input, target and loss mask of every example, cut or not, with and without --joint_lm.
(tests/test_batching.py holds them against a reference written out from upstream's source.)"""

from __future__ import annotations

import pytest

from gpt2_lora.training.batching import Layout, collate
from helpers import random_pairs, write_encoded

pytestmark = pytest.mark.upstream


@pytest.mark.parametrize("seq_len,joint_lm", [(24, False), (9, False), (24, True), (5, False)])
def test_padded_layout_equals_upstreams_ft_dataset(upstream, tmp_path, seq_len, joint_lm):
    examples = random_pairs(30)
    dataset = upstream("data_utils").FT_Dataset(str(write_encoded(tmp_path / "train.jsonl", examples)), 30, seq_len,
                                                joint_lm=joint_lm)
    layout = Layout(examples, seq_len, joint_lm)
    batch = collate(layout, list(range(30)), pad_to=seq_len)
    mask = batch.dense_mask()
    cut = 0
    for i, (c, p) in enumerate(examples):
        item = dataset[i]
        cut += len(c) + len(p) > seq_len
        assert batch.input_ids[i].tolist() == item["input"].tolist()
        assert layout.dense(i)[1].tolist() == item["target"].tolist()
        assert mask[i].tolist() == layout.dense(i)[2].tolist() == item["mask"].tolist()
    assert cut > 0  # some examples are longer than seq_len: upstream's cut is checked too
