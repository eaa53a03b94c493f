"""training.batching: upstream FT_Dataset layout (hand-written reference below), collation in every mode,
packed rows, and the prefetching loader."""

from __future__ import annotations

import pytest
import torch

from gpt2_lora.training.batching import Layout, Prefetcher, collate, collate_packed
from gpt2_lora.training.sampling import BatchPlan
from helpers import random_pairs


def reference_item(context, completion, seq_len, joint_lm=False):
    """Upstream FT_Dataset.__getitem__ (no prefix/infix), written out from its source: pad/cut
    context + completion to seq_len, targets shifted by one, mask over the completion predictions."""
    def pad(tokens, value):
        tokens = tokens[:seq_len]
        return tokens + [value] * (seq_len - len(tokens)), len(tokens)

    inp, n = pad(context + completion, 0)
    tgt, _ = pad((context + completion)[1:], 0)
    mask = [1.0] * (n - 1) if joint_lm else [0.0] * (len(context) - 1) + [1.0] * (n - len(context))
    mask, _ = pad(mask, 0.0)
    return inp, tgt, mask


@pytest.mark.parametrize("seq_len,joint_lm", [(24, False), (9, False), (24, True), (5, False)])
def test_padded_layout_equals_upstream(seq_len, joint_lm):
    examples = random_pairs(30)
    layout = Layout(examples, seq_len, joint_lm)
    batch = collate(layout, list(range(30)), pad_to=seq_len)
    mask = batch.dense_mask()
    for i, (c, p) in enumerate(examples):
        inp, tgt, msk = reference_item(c, p, seq_len, joint_lm)
        assert batch.input_ids[i].tolist() == inp
        assert mask[i].tolist() == msk
        assert layout.dense(i)[1].tolist() == tgt
        assert layout.dense(i)[2].tolist() == msk
        on = mask[i] > 0
        assert batch.dense_target()[i][on].tolist() == torch.tensor(tgt)[on].tolist()


def test_loss_mask_covers_exactly_the_completion():
    examples = random_pairs(20, seed=3)
    layout = Layout(examples, 512)
    batch = collate(layout, list(range(20)), pad_multiple=8)
    for r, (c, p) in enumerate(examples):
        picked = batch.row == r
        # every completion token (eos included) is predicted once, and nothing else is
        assert batch.target[picked].tolist() == p
        positions = (batch.index[picked] - r * batch.input_ids.size(1)).tolist()
        assert positions == list(range(len(c) - 1, len(c) + len(p) - 1))


def per_example(batch):
    """{example: (input tokens, [(position, target)])} without any padding."""
    out = {}
    T = batch.input_ids.size(1)
    for r, i in enumerate(batch.examples):
        real = batch.weight > 0
        sel = (batch.row == r) & real
        n = int((batch.input_ids[r] != 0).nonzero().max()) + 1 if (batch.input_ids[r] != 0).any() else 0
        out[i] = (batch.input_ids[r, :n].tolist(),
                  list(zip((batch.index[sel] - r * T).tolist(), batch.target[sel].tolist())))
    return out


def test_modes_give_the_same_examples_tokens_and_masks():
    examples = random_pairs(45, seed=1)
    layout = Layout(examples, 20)
    common = dict(lengths=layout.n, batch_size=4, seed=7)
    padded, dynamic = BatchPlan(mode="padded", **common), BatchPlan(mode="dynamic", **common)
    bucketed = BatchPlan(mode="bucketed", window=3, **common)
    for epoch in (1, 2):
        assert padded.epoch(epoch) == dynamic.epoch(epoch)  # same order: upstream's
        seen_p, seen_b = {}, {}
        for idx in padded.epoch(epoch):
            a = per_example(collate(layout, idx, pad_to=20))
            b = per_example(collate(layout, idx, pad_multiple=8, select_multiple=16))
            assert a == b
            seen_p.update(a)
        flat_b = []
        for idx in bucketed.epoch(epoch):
            seen_b.update(per_example(collate(layout, idx, pad_multiple=8)))
            flat_b += idx
        assert seen_b == seen_p
        assert sorted(flat_b) == sorted(i for b in padded.epoch(epoch) for i in b)


def test_prefetcher_keeps_order_and_raises():
    layout = Layout(random_pairs(10), 16)
    plan = [[0, 1], [2, 3], [4, 5]]
    got = [b.examples for b in Prefetcher(plan, lambda idx: collate(layout, idx), depth=1)]
    assert got == plan

    def boom(idx):
        raise ValueError("collate failed")

    with pytest.raises(ValueError, match="collate failed"):
        list(Prefetcher(plan, boom))


def test_collate_packed_refuses_more_segments_than_its_fixed_size():
    layout = Layout([([1, 2], [3]), ([4], [5]), ([6], [7, 8])], 8)  # lengths 3, 2, 3
    batch = collate_packed(layout, [[0, 1], [2]], 8, 2)  # unpadded: 2 + 1 examples, 2 padding segments
    assert batch.cu_seqlens.tolist() == [0, 3, 5, 8, 11, 16]
    with pytest.raises(ValueError, match="5 segments exceed max_segments=4"):
        collate_packed(layout, [[0, 1], [2]], 8, 2, max_segments=4)


def test_examples_cut_before_their_completion_are_found():
    layout = Layout([([1, 2, 3, 4], [5, 6]), ([1], [2, 3]), ([1, 2, 3, 4, 5, 6], [7])], 5)
    assert layout.without_completion().tolist() == [2]  # its context alone fills the 5 tokens
    with pytest.raises(ValueError, match="seq_len must be at least 2"):
        Layout([([1], [2])], 1)
