"""ROUGE-L as coco-caption computes it (sentence-level LCS F-measure with beta=1.2, averaged).

Inputs are coco-tokenised strings (see ``ptb_tokenizer``); tokens are ``split(" ")``, as coco does,
so an empty string is one empty token. Precision and recall are each maximised over the references
before they are combined.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BETA = 1.2


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (bit-parallel, Allison–Dix / Hyyrö)."""
    if len(a) < len(b):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, token in enumerate(b):
        masks[token] = masks.get(token, 0) | (1 << i)
    row = 0
    for token in a:
        match = masks.get(token, 0)
        if match:
            x = match | row
            y = (row << 1) | 1
            row = x & ~(x - y)  # the bits set in row mark the LCS's positions so far
    return bin(row).count("1")


def rouge_l_sentence(candidate: str, refs: Sequence[str], beta: float = BETA) -> float:
    tokens = candidate.split(" ")
    prec, rec = [], []
    for ref in refs:
        ref_tokens = ref.split(" ")
        lcs = lcs_length(ref_tokens, tokens)
        prec.append(lcs / float(len(tokens)))
        rec.append(lcs / float(len(ref_tokens)))
    p, r = max(prec), max(rec)
    if p != 0 and r != 0:
        return ((1 + beta ** 2) * p * r) / float(r + beta ** 2 * p)
    return 0.0


def rouge_l(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[float, np.ndarray]:
    """(corpus ROUGE-L, per-segment scores); every segment needs at least one reference."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps or any(not r for r in refs):
        raise ValueError("ROUGE-L needs at least one segment and one reference per segment")
    scores = np.array([rouge_l_sentence(h, r) for h, r in zip(hyps, refs)])
    return float(np.mean(scores)), scores
