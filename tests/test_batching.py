"""Batching: upstream FT_Dataset layout (hand-written reference below), sampler order, the three modes."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from gpt2_lora.batching import (BatchPlan, Layout, Prefetcher, collate, collate_packed, eval_batches, pack_rows,
                                packed_shape, read_encoded, token_budget_batches, upstream_order)
from gpt2_lora.errors import UserError


def make_examples(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(seed)
    return [([rng.randint(1, 999) for _ in range(rng.randint(0, 12))] + [50256],
             [rng.randint(1, 999) for _ in range(rng.randint(0, 15))] + [50256]) for _ in range(n)]


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
    examples = make_examples(30)
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
    examples = make_examples(20, seed=3)
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
    examples = make_examples(45, seed=1)
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


@pytest.mark.parametrize("world_size", [1, 3])
def test_order_is_distributed_samplers_with_upstream_fill_ins(world_size):
    n, bs, seed = 37, 4, 11
    plan = [BatchPlan(np.ones(n, dtype=np.int64), bs, seed, "padded", world_size, r) for r in range(world_size)]
    total = -(-n // bs) * bs  # FT_Dataset.__len__ = num_batches * batch_size
    for rank in range(world_size):
        sampler = DistributedSampler(range(total), num_replicas=world_size, rank=rank, seed=seed)
        fill = random.Random(911)  # FT_Dataset replaces indices >= n by fill.randint(0, n - 1), in access order
        for epoch in (1, 2, 3):
            sampler.set_epoch(epoch)
            order = list(sampler)
            expected = [order[i:i + bs] for i in range(0, len(order) - bs + 1, bs)]  # drop_last
            expected = [[i if i < n else fill.randint(0, n - 1) for i in b] for b in expected]
            assert plan[rank].epoch(epoch) == expected
            assert [[i for i in b] for b in upstream_order(n, bs, seed, epoch, world_size, rank)] == \
                [order[i:i + bs] for i in range(0, len(order) - bs + 1, bs)]


def test_token_budget_and_eval_batches():
    lengths = np.array([5, 30, 7, 12, 64, 3, 9, 40, 41, 2])
    batches = token_budget_batches(sorted(range(10), key=lambda i: lengths[i]), lengths, 64, pad_multiple=8)
    assert sorted(i for b in batches for i in b) == list(range(10))
    for b in batches:
        longest = -(-max(lengths[i] for i in b) // 8) * 8
        assert len(b) == 1 or len(b) * longest <= 64
    parts = [eval_batches(lengths, 64, 8, 2, r) for r in range(2)]
    assert sorted(i for p in parts for b in p for i in b) == list(range(10))
    plan = BatchPlan(lengths, 2, 0, "bucketed", max_tokens=64, pad_multiple=8)
    assert sorted(i for b in plan.epoch(1) for i in b) == sorted(  # same examples as upstream's epoch
        i for b in BatchPlan(lengths, 2, 0, "dynamic").epoch(1) for i in b)


def test_read_encoded_errors(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"context": [1, 2], "completion": [3]}) + "\n")
    assert read_encoded(good) == [([1, 2], [3])]
    cases = {
        "bad.jsonl": (json.dumps({"context": [1], "completion": [2]}) + "\n{oops\n", ":2: bad JSON"),
        "formatted.jsonl": (json.dumps({"context": "a | b", "completion": "text"}) + "\n", "list of token ids"),
        "empty.jsonl": ("", "no examples"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=message):
            read_encoded(tmp_path / name)
    with pytest.raises(UserError, match="not found"):
        read_encoded(tmp_path / "missing.jsonl")


def test_prefetcher_keeps_order_and_raises():
    layout = Layout(make_examples(10), 16)
    plan = [[0, 1], [2, 3], [4, 5]]
    got = [b.examples for b in Prefetcher(plan, lambda idx: collate(layout, idx), depth=1)]
    assert got == plan

    def boom(idx):
        raise ValueError("collate failed")

    with pytest.raises(ValueError, match="collate failed"):
        list(Prefetcher(plan, boom))


def test_pack_rows_best_fit_decreasing():
    lengths = np.array([7, 3, 5, 5, 2, 8, 1, 4])
    rows = pack_rows(range(8), lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(8))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)
    # 8, 7, 5, 5, 4, 3, 2, 1: 8+2, 7+3, 5+5, 4+1 (best fit, not first fit: 1 goes to the 4, the fullest
    # row with room), i.e. the optimal ceil(35 / 10) = 4 rows
    assert [sorted(lengths[i] for i in r) for r in rows] == [[2, 8], [3, 7], [5, 5], [1, 4]]
    with pytest.raises(UserError, match="--pack_len 6"):
        pack_rows(range(8), lengths, 6)


def test_collate_packed_refuses_more_segments_than_its_fixed_size():
    layout = Layout([([1, 2], [3]), ([4], [5]), ([6], [7, 8])], 8)  # lengths 3, 2, 3
    batch = collate_packed(layout, [[0, 1], [2]], 8, 2)  # unpadded: 2 + 1 examples, 2 padding segments
    assert batch.cu_seqlens.tolist() == [0, 3, 5, 8, 11, 16]
    with pytest.raises(ValueError, match="5 segments exceed max_segments=4"):
        collate_packed(layout, [[0, 1], [2]], 8, 2, max_segments=4)


def check_cu_seqlens(batch, max_segments):
    """cu_seqlens: fixed size, from 0 to B*T; its non-empty segments are, row by row, the examples
    (their lengths in order) then the row's padding; each lies in one row with one segment id."""
    B, T = batch.input_ids.shape
    cu = batch.cu_seqlens.tolist()
    assert len(cu) == max_segments + 1 and cu[0] == 0 and cu[-1] == B * T and cu == sorted(cu)
    spans = [(a, b) for a, b in zip(cu, cu[1:]) if b > a]
    segments = batch.segment_ids.view(-1)
    lengths = []
    for a, b in spans:
        assert a // T == (b - 1) // T  # within one row
        assert len(set(segments[a:b].tolist())) == 1
        if int(segments[a]) > 0:
            lengths.append(b - a)
        else:
            assert b % T == 0  # padding closes its row
    assert lengths == list(batch.lengths)


def test_packed_batches_hold_each_example_as_dynamic_does():
    examples = make_examples(60, seed=4)
    layout = Layout(examples, 24)
    shape = packed_shape(layout.n, 96, 24, 32)
    plan = BatchPlan(layout.n, 4, 5, "packed", packed=shape)
    assert shape == (32, 3, 64, 3 * (32 // int(layout.n.min()) + 1))
    for epoch in (1, 2):
        seen = []
        for rows in plan.epoch(epoch):
            assert len(rows) <= 3
            batch = collate_packed(layout, rows, 32, 3, select_multiple=16, max_segments=shape.max_segments)
            assert batch.input_ids.shape == (3, 32) and batch.index.numel() % 16 == 0
            real = batch.weight > 0
            flat_pos = batch.position_ids.view(-1)
            assert int((batch.segment_ids > 0).sum()) == sum(batch.lengths)
            check_cu_seqlens(batch, shape.max_segments)
            for e, i in enumerate(batch.examples):  # each example: its tokens at positions 0.., its targets
                mine = batch.row == e
                single = collate(layout, [i])
                starts = batch.index[mine & real] - batch.index[mine & real].min()
                assert flat_pos[batch.index[mine & real]].tolist() == single.index[single.weight > 0].tolist()
                assert batch.target[mine & real].tolist() == single.target[single.weight > 0].tolist()
                assert starts.tolist() == list(range(len(starts)))
            seen += batch.examples
        assert sorted(seen) == list(range(60))  # every example exactly once per epoch
    assert plan.epoch(1) != plan.epoch(2)
    shares = [BatchPlan(layout.n, 4, 5, "packed", 2, r, packed=shape).epoch(1) for r in range(2)]
    assert not {i for b in shares[0] for r in b for i in r} & {i for b in shares[1] for r in b for i in r}
    with pytest.raises(UserError, match="--max_tokens 16 is less than one row of --pack_len 32"):
        packed_shape(layout.n, 16, 24, 32)
    with pytest.raises(ValueError, match="PackedShape"):
        BatchPlan(layout.n, 4, 5, "packed")
