"""TER as GenerationEval computes it: pyter3 0.3's per-sentence TER, min over references, averaged.

pyter3's TER is not Snover's tercom: it greedily applies the one shift that lowers the word-level
Levenshtein distance most, until no shift helps, and returns (shifts + distance) / len(reference).
Its rules, all kept here because they change the numbers:

* a shift candidate is every (i, j) with ``hyp[i] == ref[j]`` and ``i != j``, moving the *longest*
  common run starting there (``length`` words) out of the hypothesis and back in at index ``j`` of
  the shortened list;
* among the candidates with the largest gain, the one whose shifted word list sorts last
  (Python list order) wins — pyter sorts ``(gain, words)`` pairs and takes the last;
* an empty reference raises ZeroDivisionError in pyter; GenerationEval then scores that pair 1.

We compute the same thing faster: all candidates of one step are scored at once by a vectorised
Levenshtein (one numpy row update per hypothesis word), instead of one Python DP per candidate.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm import tqdm


def _levenshtein(candidates: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Word edit distance of each row of ``candidates`` (C x n ids) to ``ref`` (m ids)."""
    count, length = candidates.shape
    cols = np.arange(len(ref) + 1)
    row = np.broadcast_to(cols, (count, len(ref) + 1)).copy()
    step = np.empty_like(row)
    for i in range(length):
        # Deletion and substitution first; insertions (the left-to-right chain, +1 per column) are
        # then a running minimum of (step - column) shifted back by the column index.
        step[:, 0] = row[:, 0] + 1
        np.minimum(row[:, 1:] + 1, row[:, :-1] + (candidates[:, i:i + 1] != ref), out=step[:, 1:])
        row = cols + np.minimum.accumulate(step - cols, axis=1)
    return row[:, -1]


def _shift_candidates(hyp: list[int], ref: list[int]) -> list[tuple[int, int, int]]:
    """pyter's ``_findpairs``: (hyp start, ref start, longest common run length), starts differing."""
    pairs = []
    for i, word in enumerate(hyp):
        for j, ref_word in enumerate(ref):
            if i == j or word != ref_word:
                continue
            length = 1
            while i + length < len(hyp) and j + length < len(ref) and hyp[i + length] == ref[j + length]:
                length += 1
            pairs.append((i, j, length))
    return pairs


def ter(hyp_words: Sequence[str], ref_words: Sequence[str]) -> float:
    """pyter3's ``ter(hyp_words, ref_words)``; raises ZeroDivisionError for an empty reference, as it does."""
    if not ref_words:
        raise ZeroDivisionError("TER of an empty reference")
    vocab: dict[str, int] = {}
    hyp = [vocab.setdefault(w, len(vocab)) for w in hyp_words]
    ref_ids = np.array([vocab.setdefault(w, len(vocab)) for w in ref_words], dtype=np.int64)
    words = list(vocab)  # id -> word, for pyter's tie-break on the word lists
    ref = ref_ids.tolist()
    shifts = 0
    distance = None  # Levenshtein distance of the current hyp, once known
    while True:
        pairs = _shift_candidates(hyp, ref)
        if not pairs:
            break
        shifted = []
        for start, target, length in pairs:
            moved = hyp[:start] + hyp[start + length:]
            moved[target:target] = hyp[start:start + length]
            shifted.append(moved)
        distances = _levenshtein(np.array([hyp] + shifted, dtype=np.int64), ref_ids)
        distance = int(distances[0])
        gains = distance - distances[1:]
        best = int(gains.max())
        if best <= 0:
            break
        tied = [shifted[k] for k in np.flatnonzero(gains == best)]
        hyp = max(tied, key=lambda ids: [words[i] for i in ids]) if len(tied) > 1 else tied[0]
        distance -= best
        shifts += 1
    if distance is None:  # no shift candidate at all
        distance = int(_levenshtein(np.array([hyp], dtype=np.int64).reshape(1, len(hyp)), ref_ids)[0])
    return (shifts + distance) / len(ref)


def segment_ter(hyp: str, refs: Sequence[str]) -> float:
    """GenerationEval's ``ter_score`` for one segment: whitespace-split words, min over references.

    An empty reference (or one pyter cannot score) counts 1.0, as GenerationEval's ``except`` does.
    """
    if not refs:
        raise ValueError("a segment needs at least one reference")
    hyp_words = hyp.split()
    best = None
    for ref in dict.fromkeys(refs):  # padded duplicates score the same: compute each once
        ref_words = ref.split()
        score = ter(hyp_words, ref_words) if ref_words else 1.0
        best = score if best is None else min(best, score)
    return best


def corpus_ter(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Mean over segments of ``segment_ter`` (GenerationEval's TER; lower is better)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps:
        raise ValueError("TER of an empty corpus")
    scores = [segment_ter(hyp, seg_refs)
              for hyp, seg_refs in tqdm(zip(hyps, refs), total=len(hyps), desc="TER", unit="seg",
                                        disable=None, leave=False)]
    return sum(scores) / len(scores)
