"""training.sampling: upstream's example order (DistributedSampler with FT_Dataset's fill-ins, written out
below), token budgets, best-fit packing, the packed plan and each rank's share of it."""

from __future__ import annotations

import random

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from gpt2_lora.training.batching import Layout, collate, collate_packed
from gpt2_lora.training.sampling import (BatchPlan, eval_batches, pack_rows, packed_shape, token_budget_batches,
                                         upstream_order)
from helpers import random_pairs


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


def test_pack_rows_best_fit_decreasing():
    lengths = np.array([7, 3, 5, 5, 2, 8, 1, 4])
    rows = pack_rows(range(8), lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(8))
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows)
    # 8, 7, 5, 5, 4, 3, 2, 1: 8+2, 7+3, 5+5, 4+1 (best fit, not first fit: 1 goes to the 4, the fullest
    # row with room), i.e. the optimal ceil(35 / 10) = 4 rows
    assert [sorted(lengths[i] for i in r) for r in rows] == [[2, 8], [3, 7], [5, 5], [1, 4]]
    with pytest.raises(ValueError, match="an example of 8 tokens does not fit row_len 6"):
        pack_rows(range(8), lengths, 6)


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
    examples = random_pairs(60, seed=4)
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
    with pytest.raises(ValueError, match="max_tokens 16 is less than one row of pack_len 32"):
        packed_shape(layout.n, 16, 24, 32)
    with pytest.raises(ValueError, match=f"an example of {int(layout.n.max())} tokens does not fit pack_len 8"):
        packed_shape(layout.n, 96, 24, 8)
    with pytest.raises(ValueError, match="PackedShape"):
        BatchPlan(layout.n, 4, 5, "packed")


@pytest.mark.parametrize("mode", ["packed", "bucketed"])
def test_ranks_take_turns_through_one_shuffled_plan(mode):
    """Under DDP rank r takes batches r, r + N, ... of the one-process plan (the last ones that do not
    make a full round are dropped): N ranks stepping together see what one process sees in N
    consecutive micro-batches, so one DDP step equals one --grad_acc N step."""
    layout = Layout(random_pairs(50, seed=2), 24)
    shape = packed_shape(layout.n, 64, 24, 32) if mode == "packed" else None
    kwargs = dict(max_tokens=64, packed=shape) if mode == "packed" else dict(max_tokens=64, pad_multiple=8)
    one = BatchPlan(layout.n, 4, 5, mode, **kwargs).epoch(1)
    for world_size in (2, 3):
        shares = [BatchPlan(layout.n, 4, 5, mode, world_size, r, **kwargs).epoch(1) for r in range(world_size)]
        rounds = len(one) // world_size
        assert all(len(s) == rounds for s in shares)
        assert [shares[r][k] for k in range(rounds) for r in range(world_size)] == one[:rounds * world_size]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        BatchPlan(layout.n, 0, 5, "dynamic")
    with pytest.raises(ValueError, match="max_tokens needs mode bucketed or packed"):
        BatchPlan(layout.n, 4, 5, "dynamic", max_tokens=64)
