"""CIDEr as coco-caption computes it (``Cider``, not CIDEr-D), on coco-tokenised strings.

n-grams 1..4 of ``str.split()`` tokens, tf-idf weights with the document frequencies and the corpus
size taken from the references being scored, cosine similarity per n with the clipping
``min(hyp, ref) * ref`` and a Gaussian length penalty (sigma 6) on the difference of the
*bigram* counts (coco's "length"), averaged over n and references, times 10.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

N = 4
SIGMA = 6.0


def _ngram_counts(sentence: str, n: int = N) -> Counter:
    words = sentence.split()
    counts: Counter = Counter()
    for k in range(1, n + 1):  # insertion order as coco's precook: all unigrams, then bigrams, ...
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def cider(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = N,
          sigma: float = SIGMA) -> tuple[float, np.ndarray]:
    """(corpus CIDEr, per-segment scores)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps or any(not r for r in refs):
        raise ValueError("CIDEr needs at least one segment and one reference per segment")
    hyp_counts = [_ngram_counts(h, n) for h in hyps]
    ref_counts = [[_ngram_counts(r, n) for r in seg_refs] for seg_refs in refs]

    doc_freq: Counter = Counter()
    for seg in ref_counts:
        doc_freq.update(set().union(*seg))  # each n-gram once per segment
    ref_len = np.log(float(len(ref_counts)))
    # idf for every n-gram we will meet; unseen ones get log(max(1, 0)) = 0, i.e. idf = ref_len
    grams = list(doc_freq)
    idf = dict(zip(grams, (ref_len - np.log(np.maximum(1.0, [doc_freq[g] for g in grams]))).tolist()))
    ref_len = float(ref_len)

    def to_vec(counts: Counter):
        vec = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for gram, tf in counts.items():
            k = len(gram) - 1
            value = float(tf) * idf.get(gram, ref_len)
            vec[k][gram] = value
            norm[k] += pow(value, 2)
            if k == 1:
                length += tf  # coco's "length" is the bigram count
        return vec, [float(np.sqrt(x)) for x in norm], length

    penalty_denominator = 2 * sigma ** 2
    scores = []
    for hyp, seg_refs in zip(hyp_counts, ref_counts):
        vec, norm, length = to_vec(hyp)
        total = [0.0] * n
        for ref in seg_refs:
            vec_ref, norm_ref, length_ref = to_vec(ref)
            delta = float(length - length_ref)
            penalty = np.e ** (-(delta ** 2) / penalty_denominator)
            for k in range(n):
                val = 0.0
                ref_k = vec_ref[k]
                for gram, value in vec[k].items():
                    r = ref_k.get(gram, 0.0)
                    val += min(value, r) * r
                if norm[k] != 0 and norm_ref[k] != 0:
                    val /= norm[k] * norm_ref[k]
                total[k] += val * penalty
        scores.append(float(np.mean(total)) / len(seg_refs) * 10.0)
    scores = np.array(scores)
    return float(np.mean(scores)), scores
