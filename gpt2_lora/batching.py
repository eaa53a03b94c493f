"""Training and validation batches over the encoded jsonl layer.

Every example is laid out exactly as upstream ``FT_Dataset`` (``src/data_utils.py``) lays it out:

* ``full = context + completion``; the input is ``full[:seq_len]`` (n tokens), the target at position i
  is ``full[i + 1]`` (0 past the end);
* the loss mask is 1 on positions ``[len(context) - 1, n - 1)``, i.e. on the positions that predict a
  completion token (``--obj jlm``: ``[0, n - 1)``). As upstream, when an example is cut at ``seq_len`` the
  last position stays unmasked even though its target is known.

Three ways to pad a batch (``--batching``):

* ``padded``   — to ``seq_len`` with token 0: upstream's tensors, for parity checks;
* ``dynamic``  — to the longest example of the batch (rounded up to ``pad_multiple``). Attention is
  causal and padding is on the right, so real positions see exactly what they see in ``padded``;
* ``bucketed`` — ``dynamic`` plus a sampler that batches examples of similar length (optionally by a
  token budget instead of a fixed batch size). This changes which examples share a batch.
* ``packed``   — a throughput mode: several examples share each row of a fixed (rows, row_len) batch
  of ``max_tokens`` tokens (best-fit decreasing). Each keeps its own positions (from 0) and attends
  only to its own tokens (a block-diagonal causal mask), so each example's loss terms are exactly
  those of ``dynamic``; only the grouping into batches changes, as in ``bucketed``. Every batch has
  the same shape (but for the count of masked entries, which a compiled step marks dynamic), so
  compiled code is specialised once and there is almost no padding.

``padded`` and ``dynamic`` use upstream's example order: ``DistributedSampler(shuffle=True,
seed=random_seed)`` with ``set_epoch(epoch)`` (epochs count from 1), over ``ceil(N / batch) * batch``
indices where the ones past N are replaced by draws of ``random.Random(911)``, and ``drop_last``.
"""

from __future__ import annotations

import bisect
import json
import os
import queue
import random
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from .errors import UserError
from .fileio import require_file

BATCHING_MODES = ("padded", "dynamic", "bucketed", "packed")
FILL_SEED = 911  # upstream FT_Dataset's random.Random(911), used for the indices past the data
PACK_CHUNK = 16384  # examples packed together (a larger chunk packs tighter, a smaller one mixes more)


# ------------------------------------------------------------------------------------------- reading
def read_encoded(path: str | os.PathLike, what: str = "data file",
                 vocab_size: int | None = None) -> list[tuple[list[int], list[int]]]:
    """(context ids, completion ids) per line of an encoded jsonl file; bad lines name file:line, and
    so do ids outside [0, vocab_size) (outside int32 when no vocab_size is given)."""
    limit = vocab_size if vocab_size is not None else 2 ** 31
    path = require_file(path, what)
    examples = []
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            where = f"{path}:{line_no}"
            try:
                record = json.loads(raw)
            except UnicodeDecodeError:
                raise UserError(f"{where}: not valid UTF-8") from None
            except json.JSONDecodeError as err:
                raise UserError(f"{where}: bad JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise UserError(f"{where}: expected a JSON object with 'context' and 'completion'")
            pair = []
            for key in ("context", "completion"):
                ids = record.get(key)
                if not isinstance(ids, list) or not all(type(t) is int for t in ids):
                    raise UserError(f"{where}: '{key}' must be a list of token ids (is this the encoded "
                                    f"file, not the *_formatted.jsonl one?)")
                outside = next((t for t in ids if not 0 <= t < limit), None)
                if outside is not None:
                    vocab = f"the vocabulary of {vocab_size}" if vocab_size is not None else "int32"
                    raise UserError(f"{where}: token id {outside} in '{key}' is outside {vocab}")
                pair.append(ids)
            examples.append((pair[0], pair[1]))
    if not examples:
        raise UserError(f"{path}: no examples (empty file)")
    return examples


# -------------------------------------------------------------------------------------------- layout
class Layout:
    """Token arrays of a data set, laid out for training with a fixed ``seq_len`` (see module doc)."""

    def __init__(self, examples: Sequence[tuple[list[int], list[int]]], seq_len: int, joint_lm: bool = False):
        if seq_len < 2:
            raise UserError(f"--seq_len must be at least 2, got {seq_len}")
        self.seq_len = seq_len
        self.full = [np.asarray(c + p, dtype=np.int64) for c, p in examples]
        # n = input length; the mask covers [lo, hi)
        self.n = np.array([min(len(f), seq_len) for f in self.full], dtype=np.int64)
        if joint_lm:
            self.lo = np.zeros_like(self.n)
            self.hi = np.maximum(self.n - 1, 0)
        else:
            lc = np.array([len(c) for c, _ in examples], dtype=np.int64)
            # upstream: [0.0] * (lc - 1) + [1.0] * (n - lc), cut to seq_len
            self.lo = np.minimum(np.maximum(lc - 1, 0), seq_len)
            self.hi = np.minimum(self.lo + np.maximum(self.n - lc, 0), seq_len)

    def __len__(self) -> int:
        return len(self.full)

    def dense(self, i: int, length: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input, target, mask) of example i padded to ``length`` (default seq_len), as upstream's tensors."""
        length = self.seq_len if length is None else length
        n, f = int(self.n[i]), self.full[i]
        inp = np.zeros(length, dtype=np.int64)
        tgt = np.zeros(length, dtype=np.int64)
        msk = np.zeros(length, dtype=np.float32)
        inp[:n] = f[:n]
        m = min(n, len(f) - 1)
        tgt[:m] = f[1:m + 1]
        msk[self.lo[i]:self.hi[i]] = 1.0
        return inp, tgt, msk


@dataclass
class Batch:
    """One batch, ready for the loss: inputs (B, T) and the masked positions, flattened.

    ``index`` are positions in ``input_ids.view(-1)`` whose prediction counts; ``target`` their next
    tokens; ``weight`` 1.0 for real entries and 0.0 for the padding that rounds their number up to a
    multiple (so compiled graphs see few shapes); ``row`` which of ``examples`` each entry belongs to
    (the batch row, unless packed). Packed batches also carry ``position_ids`` (B, T),
    ``segment_ids`` (B, T): 1, 2, ... for the examples of a row, 0 for padding, and ``cu_seqlens``: the
    same segments as offsets into the flattened (B*T) tokens (each row's padding a segment of its own,
    then zero-length segments up to a fixed count), for variable-length attention kernels.
    """

    input_ids: torch.Tensor     # (B, T) int64
    index: torch.Tensor         # (K,) int64
    target: torch.Tensor        # (K,) int64
    weight: torch.Tensor        # (K,) float32
    row: torch.Tensor           # (K,) int64
    examples: list[int]         # data set indices of the rows
    lengths: list[int]          # real (unpadded) length of each row
    n_targets: int              # real masked positions
    position_ids: torch.Tensor | None = None  # (B, T) int64, packed batches only
    segment_ids: torch.Tensor | None = None   # (B, T) int32, packed batches only
    cu_seqlens: torch.Tensor | None = None    # (S + 1,) int32, packed batches only

    @property
    def n_tokens(self) -> int:
        return sum(self.lengths)

    def _map(self, fn) -> "Batch":
        tensors = [None if t is None else fn(t) for t in (self.input_ids, self.index, self.target, self.weight,
                                                           self.row, self.position_ids, self.segment_ids,
                                                           self.cu_seqlens)]
        *first, position_ids, segment_ids, cu_seqlens = tensors
        return Batch(*first, self.examples, self.lengths, self.n_targets, position_ids, segment_ids, cu_seqlens)

    def to(self, device, non_blocking: bool = True) -> "Batch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        return self._map(lambda t: t.pin_memory())

    def dense_mask(self) -> torch.Tensor:
        """The (B, T) float loss mask (upstream's ``mask``), rebuilt from ``index``."""
        mask = torch.zeros(self.input_ids.numel())
        mask.index_put_((self.index,), self.weight, accumulate=True)
        return mask.view_as(self.input_ids)

    def dense_target(self) -> torch.Tensor:
        """(B, T) targets at the masked positions (0 elsewhere)."""
        target = torch.zeros(self.input_ids.numel(), dtype=torch.long)
        target[self.index[self.weight > 0]] = self.target[self.weight > 0]
        return target.view_as(self.input_ids)


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple if multiple > 1 else x


def collate(layout: Layout, indices: Sequence[int], pad_to: int | None = None, pad_multiple: int = 1,
            select_multiple: int = 1) -> Batch:
    """Batch the examples ``indices``: padded to ``pad_to`` (e.g. seq_len) or to the longest, rounded
    up to ``pad_multiple`` (never past seq_len); masked entries padded to ``select_multiple``."""
    n = layout.n[indices]
    length = pad_to if pad_to is not None else min(round_up(int(n.max()), pad_multiple), layout.seq_len)
    ids = np.zeros((len(indices), length), dtype=np.int64)
    index, target, row = [], [], []
    for r, i in enumerate(indices):
        f, k, lo, hi = layout.full[i], int(n[r]), int(layout.lo[i]), int(layout.hi[i])
        ids[r, :k] = f[:k]
        index.append(np.arange(r * length + lo, r * length + hi))
        target.append(f[lo + 1:hi + 1])
        row.append(np.full(hi - lo, r))
    return Batch(torch.from_numpy(ids), *_masked_entries(index, target, row, select_multiple), list(indices),
                 n.tolist(), sum(len(i) for i in index))


def _masked_entries(index: list, target: list, row: list, select_multiple: int) -> list[torch.Tensor]:
    """Concatenated per-example ``index``, ``target``, ``row`` pieces, padded with weight-0 entries to a
    multiple of ``select_multiple``: the tensors (index, target, weight, row) of a ``Batch``."""
    index, target, row = np.concatenate(index), np.concatenate(target), np.concatenate(row)
    real = len(index)
    extra = round_up(max(real, 1), select_multiple) - real
    weight = np.ones(real + extra, dtype=np.float32)
    weight[real:] = 0.0
    pad = np.zeros(extra, dtype=np.int64)
    return [torch.from_numpy(np.concatenate([index, pad]).astype(np.int64)),
            torch.from_numpy(np.concatenate([target, pad]).astype(np.int64)), torch.from_numpy(weight),
            torch.from_numpy(np.concatenate([row, pad]).astype(np.int64))]


def pack_rows(indices: Sequence[int], lengths: np.ndarray, row_len: int) -> list[list[int]]:
    """Best-fit decreasing: each example, longest first, goes to the open row it fills best."""
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row number), sorted
    for i in sorted(indices, key=lambda i: -int(lengths[i])):
        n = int(lengths[i])
        if n > row_len:
            raise UserError(f"an example of {n} tokens does not fit --pack_len {row_len}")
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
    if pack_len is None:
        pack_len = min(round_up(int(lengths.max()), 64), seq_len)
    rows = max_tokens // pack_len
    if rows < 1:
        raise UserError(f"--max_tokens {max_tokens} is less than one row of --pack_len {pack_len}")
    shortest = max(int(lengths.min()), 1)
    select_multiple = 64 if dynamic_entries else max(64, max_tokens // 16)
    return PackedShape(pack_len, rows, select_multiple, rows * (pack_len // shortest + 1))


def collate_packed(layout: Layout, rows: Sequence[Sequence[int]], row_len: int, n_rows: int,
                   select_multiple: int = 1, max_segments: int | None = None) -> Batch:
    """A packed batch of shape (n_rows, row_len): ``rows`` of examples laid end to end, empty rows after;
    ``cu_seqlens`` padded with zero-length segments to ``max_segments`` (default: not padded)."""
    if len(rows) > n_rows:
        raise ValueError(f"{len(rows)} rows do not fit a batch of {n_rows}")
    ids = np.zeros((n_rows, row_len), dtype=np.int64)
    pos = np.zeros((n_rows, row_len), dtype=np.int64)
    seg = np.zeros((n_rows, row_len), dtype=np.int32)
    examples, lengths, index, target, owner, starts = [], [], [], [], [], []
    for r in range(n_rows):
        row = rows[r] if r < len(rows) else ()
        offset = 0
        for s, i in enumerate(row, 1):
            f, k, lo, hi = layout.full[i], int(layout.n[i]), int(layout.lo[i]), int(layout.hi[i])
            if offset + k > row_len:
                raise ValueError(f"row {r} holds more than {row_len} tokens")
            starts.append(r * row_len + offset)
            ids[r, offset:offset + k] = f[:k]
            pos[r, offset:offset + k] = np.arange(k)
            seg[r, offset:offset + k] = s
            index.append(np.arange(r * row_len + offset + lo, r * row_len + offset + hi))
            target.append(f[lo + 1:hi + 1])
            owner.append(np.full(hi - lo, len(examples)))
            examples.append(i)
            lengths.append(k)
            offset += k
        if offset < row_len:  # the row's padding: a segment of its own
            starts.append(r * row_len + offset)
    if max_segments is not None and len(starts) > max_segments:
        raise ValueError(f"{len(starts)} segments exceed max_segments={max_segments}")
    cu = np.full((max_segments or len(starts)) + 1, n_rows * row_len, dtype=np.int32)
    cu[:len(starts)] = starts
    return Batch(torch.from_numpy(ids), *_masked_entries(index, target, owner, select_multiple), examples,
                 lengths, sum(len(i) for i in index), torch.from_numpy(pos), torch.from_numpy(seg),
                 torch.from_numpy(cu))


# ------------------------------------------------------------------------------------------- samplers
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


class BatchPlan:
    """Which examples each training batch of each epoch holds, for this rank; deterministic in the seed.

    Epochs are planned in order (the fill-in draws of ``random.Random(911)`` run on across epochs, as
    in upstream) and cached, so a resumed run rebuilds exactly the batches of the interrupted one.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, mode: str = "dynamic",
                 world_size: int = 1, rank: int = 0, max_tokens: int | None = None, pad_multiple: int = 1,
                 window: int = 64, packed: PackedShape | None = None):
        if mode not in BATCHING_MODES:
            raise UserError(f"--batching must be one of {', '.join(BATCHING_MODES)}, got {mode!r}")
        if batch_size < 1:
            raise UserError(f"--train_batch_size must be at least 1, got {batch_size}")
        if max_tokens is not None and mode not in ("bucketed", "packed"):
            raise UserError("--max_tokens needs --batching bucketed or packed")
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


# ------------------------------------------------------------------------------------------- loading
class Prefetcher:
    """Collate batches in a background thread (numpy releases the GIL for the copies) and pin them,
    so the training loop never waits for the host side. Iterate to get ``Batch`` objects."""

    _DONE = object()

    def __init__(self, batches: Iterable[Sequence[int]], make: Callable[[Sequence[int]], Batch],
                 depth: int = 4, pin: bool = False):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(iter(batches), make, pin), daemon=True)
        self._thread.start()

    def _work(self, batches: Iterator, make, pin: bool) -> None:
        try:
            for indices in batches:
                batch = make(indices)
                if pin:
                    batch = batch.pin_memory()
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(self._DONE)
        except BaseException as err:  # surface collate errors in the consumer
            self._queue.put(err)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)


def check_lengths(layout: Layout, path: str | Path) -> None:
    """Every example must have at least one position that predicts a completion token."""
    empty = np.nonzero(layout.hi <= layout.lo)[0]
    if len(empty) == len(layout):
        raise UserError(f"{path}: no example has a completion token within --seq_len {layout.seq_len}")
    if len(empty):
        print(f"warning: {path}: {len(empty)} example(s) have no completion token within --seq_len "
              f"{layout.seq_len} and add nothing to the loss (first: line {empty[0] + 1})", file=sys.stderr)
