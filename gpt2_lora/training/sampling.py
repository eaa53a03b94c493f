"""Which examples share a training batch, epoch by epoch and rank by rank (``--batching``).

* ``padded`` / ``dynamic`` — upstream's example order: ``DistributedSampler(shuffle=True,
  seed=random_seed)`` with ``set_epoch(epoch)`` (epochs count from 1), over ``ceil(N / batch) * batch``
  indices where the ones past N are replaced by draws of ``random.Random(911)``, and ``drop_last``;
* ``bucketed`` — the same shuffled epoch, sorted by length inside windows, cut into batches of
  ``batch_size`` examples or of a ``max_tokens`` budget; this changes which examples share a batch;
* ``packed``   — a throughput mode: every example once, packed (best-fit decreasing) into rows of a
  fixed (rows, pack_len) shape of about ``max_tokens`` tokens (``packed_shape``). Every batch has the
  same shape (but for the count of masked entries, which a compiled step marks dynamic), so compiled
  code is specialised once and there is almost no padding.

Bucketed and packed batches are shuffled and dealt to the ranks in turn (rank r takes batches r,
r + world_size, ...; the last few that do not make a full round are dropped), so under DDP each rank
steps through its own share and every rank takes the same number of steps.

Errors name this module's parameters (``ValueError``); ``training.config`` maps them to the flags.
"""

from __future__ import annotations

import bisect
import random
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch

from .batching import round_up

BATCHING_MODES = ("padded", "dynamic", "bucketed", "packed")
FILL_SEED = 911  # upstream FT_Dataset's random.Random(911), used for the indices past the data
PACK_CHUNK = 16384  # examples packed together (a larger chunk packs tighter, a smaller one mixes more)


def epoch_permutation(total: int, seed: int, epoch: int) -> list[int]:
    """DistributedSampler's shuffle: randperm(total) from a generator seeded with seed + epoch."""
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(total, generator=g).tolist()


def upstream_order(num_examples: int, batch_size: int, seed: int, epoch: int, world_size: int = 1,
                   rank: int = 0) -> list[list[int]]:
    """This rank's batches of dataset *positions* (some >= num_examples, to be filled) for one epoch,
    as upstream's DataLoader(DistributedSampler(seed=seed), drop_last=True) after set_epoch(epoch)."""
    total = -(-num_examples // batch_size) * batch_size  # FT_Dataset.__len__
    order = epoch_permutation(total, seed, epoch)
    padded_total = -(-total // world_size) * world_size  # DistributedSampler pads by repeating the start
    while len(order) < padded_total:
        order += order[:padded_total - len(order)]
    mine = order[rank:padded_total:world_size]
    return [mine[i:i + batch_size] for i in range(0, len(mine) - batch_size + 1, batch_size)]


def token_budget_batches(indices: Sequence[int], lengths: np.ndarray, max_tokens: int,
                         pad_multiple: int = 1, max_batch: int | None = None) -> list[list[int]]:
    """Cut ``indices`` (already in the wanted order) into batches whose padded size
    ``rows * round_up(longest)`` stays within ``max_tokens`` (a longer example gets a batch of its own)."""
    batches, current, longest = [], [], 0
    for i in indices:
        new_longest = max(longest, round_up(int(lengths[i]), pad_multiple))
        full = max_batch is not None and len(current) >= max_batch
        if current and (full or (len(current) + 1) * new_longest > max_tokens):
            batches.append(current)
            current, new_longest = [], round_up(int(lengths[i]), pad_multiple)
        current.append(i)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


def pack_rows(indices: Sequence[int], lengths: np.ndarray, row_len: int) -> list[list[int]]:
    """Best-fit decreasing: each example, longest first, goes to the open row it fills best."""
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row number), sorted
    for i in sorted(indices, key=lambda i: -int(lengths[i])):
        n = int(lengths[i])
        if n > row_len:
            raise ValueError(f"an example of {n} tokens does not fit row_len {row_len}")
        at = bisect.bisect_left(free, (n, -1))
        if at == len(free):
            rows.append([i])
            bisect.insort(free, (row_len - n, len(rows) - 1))
        else:
            room, r = free.pop(at)
            rows[r].append(i)
            bisect.insort(free, (room - n, r))
    return rows


class PackedShape(NamedTuple):
    pack_len: int         # tokens per row
    rows: int             # rows per batch
    select_multiple: int  # the masked entries are padded to a multiple of this
    max_segments: int     # ``cu_seqlens`` holds this many segments (zero-length ones at the end)


def packed_shape(lengths: np.ndarray, max_tokens: int, seq_len: int, pack_len: int | None = None,
                 dynamic_entries: bool = False) -> PackedShape:
    """The fixed batch shape of ``--batching packed``: rows as long as the longest example rounded up
    to 64 (unless given), as many as ``max_tokens`` holds, and a bound on the segment count (a row
    holds at most ``pack_len // shortest`` examples plus its padding). The masked entries are rounded
    to 64 when the compiled step treats their number as dynamic (``dynamic_entries``), else coarsely
    (1/16 of the budget) so that specialised code sees only a few shapes."""
    longest = int(lengths.max())
    if pack_len is None:
        pack_len = min(round_up(longest, 64), seq_len)
    if longest > pack_len:
        raise ValueError(f"an example of {longest} tokens does not fit pack_len {pack_len}")
    rows = max_tokens // pack_len
    if rows < 1:
        raise ValueError(f"max_tokens {max_tokens} is less than one row of pack_len {pack_len}")
    shortest = max(int(lengths.min()), 1)
    select_multiple = 64 if dynamic_entries else max(64, max_tokens // 16)
    return PackedShape(pack_len, rows, select_multiple, rows * (pack_len // shortest + 1))


class BatchPlan:
    """Which examples each training batch of each epoch holds, for this rank; deterministic in the seed.

    Epochs are planned in order (the fill-in draws of ``random.Random(911)`` run on across epochs, as
    in upstream) and cached, so a resumed run rebuilds exactly the batches of the interrupted one.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, mode: str = "dynamic",
                 world_size: int = 1, rank: int = 0, max_tokens: int | None = None, pad_multiple: int = 1,
                 window: int = 64, packed: PackedShape | None = None):
        if mode not in BATCHING_MODES:
            raise ValueError(f"mode must be one of {', '.join(BATCHING_MODES)}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_tokens is not None and mode not in ("bucketed", "packed"):
            raise ValueError("max_tokens needs mode bucketed or packed")
        if (mode == "packed") != (packed is not None):
            raise ValueError("a PackedShape (packed_shape(...)) goes with mode 'packed', and only with it")
        self.packed = packed  # packed mode: its rows per batch and tokens per row
        self.lengths, self.batch_size, self.seed, self.mode = lengths, batch_size, seed, mode
        self.world_size, self.rank = world_size, rank
        self.max_tokens, self.pad_multiple, self.window = max_tokens, pad_multiple, window
        self.num_examples = len(lengths)
        self.num_batches = -(-self.num_examples // batch_size)  # upstream FT_Dataset.num_batches
        self._fill = random.Random(FILL_SEED)
        self._epochs: list[list[list[int]]] = []

    def _fill_in(self, positions: Iterable[int]) -> list[int]:
        n = self.num_examples
        return [p if p < n else self._fill.randint(0, n - 1) for p in positions]

    def _plan(self, epoch: int) -> list:
        if self.mode == "packed":
            return self._plan_packed(epoch)
        if self.mode != "bucketed":
            batches = upstream_order(self.num_examples, self.batch_size, self.seed, epoch,
                                     self.world_size, self.rank)
            return [self._fill_in(b) for b in batches]
        # bucketed: the same shuffled (and filled) epoch, sorted by length inside windows of
        # ``window`` batches, cut into batches, batch order shuffled; ranks take every world_size-th.
        order = self._fill_in(epoch_permutation(self.num_batches * self.batch_size, self.seed, epoch))
        span = self.window * self.batch_size
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start:start + span], key=lambda i: self.lengths[i])
            if self.max_tokens is None:
                batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            else:
                batches += token_budget_batches(chunk, self.lengths, self.max_tokens, self.pad_multiple)
        return self._shuffle_and_share(batches, epoch)

    def _plan_packed(self, epoch: int) -> list[list[list[int]]]:
        # every example once, shuffled; packed into rows within chunks of PACK_CHUNK examples; a batch
        # is ``packed.rows`` rows (the last one of a chunk may be short: collate pads it)
        order = epoch_permutation(self.num_examples, self.seed, epoch)
        n_rows = self.packed.rows
        batches = []
        for start in range(0, len(order), PACK_CHUNK):
            rows = pack_rows(order[start:start + PACK_CHUNK], self.lengths, self.packed.pack_len)
            batches += [rows[i:i + n_rows] for i in range(0, len(rows), n_rows)]
        return self._shuffle_and_share(batches, epoch)

    def _shuffle_and_share(self, batches: list, epoch: int) -> list:
        g = torch.Generator()
        g.manual_seed(self.seed * 1000 + epoch)
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        usable = len(batches) // self.world_size * self.world_size
        return batches[self.rank:usable:self.world_size]

    def epoch(self, epoch: int) -> list:
        """Batches of ``epoch`` (1-based) for this rank: lists of example indices (packed: lists of rows)."""
        if epoch < 1:
            raise ValueError("epochs count from 1")
        while len(self._epochs) < epoch:
            self._epochs.append(self._plan(len(self._epochs) + 1))
        return self._epochs[epoch - 1]

    def global_batches_per_epoch(self) -> int:
        """Batches per epoch over all ranks, as upstream counts them to derive max_step."""
        if self.max_tokens is None:
            return self.num_batches
        return len(self.epoch(1)) * self.world_size


def eval_batches(lengths: np.ndarray, max_tokens: int, pad_multiple: int = 8, world_size: int = 1,
                 rank: int = 0, max_batch: int = 256) -> list[list[int]]:
    """Length-sorted batches over the whole set for fast evaluation (the loss is aggregated per
    example afterwards, so the grouping does not change the result); rank r takes every r-th."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches = token_budget_batches(order, lengths, max_tokens, pad_multiple, max_batch=max_batch)
    return batches[rank::world_size]
