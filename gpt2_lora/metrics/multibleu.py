"""BLEU as Moses' ``multi-bleu-detok.perl`` computes it (the BLEU that GenerationEval prints).

The script reads untokenised text, applies mteval-v13a's internal tokenisation (case-sensitive unless
``-lc``), and computes corpus BLEU-4 with these rules, all kept here:

* the script reads bytes and treats ``\\s`` as ASCII whitespace only, so a no-break space or other
  Unicode space stays inside a word;
* clipped n-gram matches take each n-gram's largest count in any single reference;
* the reference length of a segment is that of the reference closest in length to the hypothesis,
  the shorter one on a tie — an empty reference line counts as a reference of length 0;
* no smoothing: any n-gram order without a match gives BLEU 0;
* brevity penalty ``exp(1 - ref_len / hyp_len)`` when the hypotheses are shorter.

sacrebleu's 13a BLEU agrees on ordinary text but drops empty references and splits on Unicode
whitespace, so this is a small port of the script's rules rather than a sacrebleu call.
Where the script dies (no hypothesis words, or no reference words) we return BLEU 0.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .mteval import ASCII_LOWER, split_punctuation, unescape_entities

MAX_ORDER = 4

_ASCII_SPACE = re.compile(r"[ \t\n\x0b\x0c\r]+")


def tokenize(text: str) -> list[str]:
    """mteval-v13a's tokenisation as multi-bleu-detok.perl's ``tokenization`` does it, as words."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    text = split_punctuation(f" {unescape_entities(text)} ")
    text = _ASCII_SPACE.sub(" ", text).strip(" ")
    return text.split(" ") if text else []


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(zip(*(words[k:] for k in range(n))))


@dataclass(frozen=True)
class BleuResult:
    """Corpus BLEU with the parts the script prints. ``score`` is a fraction (the script prints x100)."""

    score: float
    precisions: tuple[float, ...]  # clipped n-gram precision, n = 1..4
    brevity_penalty: float
    hyp_len: int
    ref_len: int

    @property
    def ratio(self) -> float:
        return self.hyp_len / self.ref_len if self.ref_len else 0.0

    def format(self) -> str:
        """The script's output line, e.g. ``BLEU = 32.32, 65.4/40.2/26.6/17.9 (BP=1.000, ...)``."""
        if self.ref_len == 0:
            return "BLEU = 0, 0/0/0/0 (BP=0, ratio=0, hyp_len=0, ref_len=0)"
        p = "/".join(f"{100 * x:.1f}" for x in self.precisions)
        return (f"BLEU = {100 * self.score:.2f}, {p} (BP={self.brevity_penalty:.3f}, ratio={self.ratio:.3f}, "
                f"hyp_len={self.hyp_len}, ref_len={self.ref_len})")


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], lowercase: bool = False) -> BleuResult:
    """BLEU of untokenised ``hyps`` against ``refs`` (per segment, a list of one or more references).

    Segments may have different numbers of references (the script's ragged reference files).
    ``lowercase`` is the script's ``-lc`` (ASCII letters only, as Perl's ``lc`` on bytes).
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    correct = [0] * (MAX_ORDER + 1)
    total = [0] * (MAX_ORDER + 1)
    hyp_len = ref_len = 0
    for hyp, seg_refs in zip(hyps, refs):
        if not seg_refs:
            raise ValueError("a segment needs at least one reference")
        if lowercase:
            hyp = hyp.translate(ASCII_LOWER)
        words = tokenize(hyp)
        # a repeated reference (GenerationEval's padding) changes neither the max counts nor the length
        ref_words = [tokenize(r.translate(ASCII_LOWER) if lowercase else r) for r in dict.fromkeys(seg_refs)]
        # closest reference length, ties to the shorter
        hyp_len += len(words)
        ref_len += min((abs(len(words) - len(r)), len(r)) for r in ref_words)[1]
        for n in range(1, MAX_ORDER + 1):
            max_ref: Counter = Counter()
            for r in ref_words:
                max_ref |= _ngrams(r, n)  # elementwise max over references
            counts = _ngrams(words, n)
            total[n] += sum(counts.values())
            correct[n] += sum(min(c, max_ref[g]) for g, c in counts.items() if g in max_ref)
    precisions = tuple(correct[n] / total[n] if total[n] else 0.0 for n in range(1, MAX_ORDER + 1))
    if ref_len == 0 or hyp_len == 0:  # the script prints 0 / dies dividing by zero
        return BleuResult(0.0, precisions, 0.0 if ref_len == 0 else 1.0, hyp_len, ref_len)
    brevity_penalty = math.exp(1 - ref_len / hyp_len) if hyp_len < ref_len else 1.0
    # the script's my_log(0) is -9999999999, so a zero precision zeroes the score; same sum order
    log_sum = 0.0
    for p in precisions:
        log_sum += math.log(p) if p else -9999999999.0
    return BleuResult(brevity_penalty * math.exp(log_sum / MAX_ORDER), precisions, brevity_penalty,
                      hyp_len, ref_len)
