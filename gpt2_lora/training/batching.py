"""Training and validation batches: examples laid out as upstream lays them out, and collated.

Every example is laid out exactly as upstream ``FT_Dataset`` (``src/data_utils.py``) lays it out:

* ``full = context + completion``; the input is ``full[:seq_len]`` (n tokens), the target at position i
  is ``full[i + 1]`` (0 past the end);
* the loss mask is 1 on positions ``[len(context) - 1, n - 1)``, i.e. on the positions that predict a
  completion token (``--obj jlm``: ``[0, n - 1)``). As upstream, when an example is cut at ``seq_len`` the
  last position stays unmasked even though its target is known.

How a batch is padded follows ``--batching`` (``sampling`` decides which examples share a batch):

* ``padded``   — to ``seq_len`` with token 0 (``collate(pad_to=seq_len)``): upstream's tensors;
* ``dynamic`` / ``bucketed`` — to the longest example of the batch, rounded up to ``pad_multiple``.
  Attention is causal and padding is on the right, so real positions see exactly what they see in
  ``padded``;
* ``packed``   — several examples end to end in each row of a fixed (rows, row_len) batch
  (``collate_packed``). Each keeps its own positions (from 0) and attends only to its own tokens (a
  block-diagonal causal mask), so each example's loss terms are exactly those of ``dynamic``.

The encoded files themselves are read by ``gpt2_lora.data.read_encoded``.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch


# -------------------------------------------------------------------------------------------- layout
class Layout:
    """Token arrays of a data set, laid out for training with a fixed ``seq_len`` (see module doc)."""

    def __init__(self, examples: Sequence[tuple[list[int], list[int]]], seq_len: int, joint_lm: bool = False):
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {seq_len}")
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

    def without_completion(self) -> np.ndarray:
        """Indices of the examples with no position that predicts a completion token (cut off by
        ``seq_len``): they add nothing to the loss."""
        return np.nonzero(self.hi <= self.lo)[0]

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
