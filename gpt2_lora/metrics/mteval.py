"""BLEU and NIST by the rules of NIST mteval-v13a, in the two routes e2e-metrics offers.

* ``route="perl"`` (e2e-metrics' default): the numbers of ``mteval-v13a-sig.pl`` run on the SGML files
  e2e-metrics writes: references padded with empty segments up to the largest reference count,
  ASCII-only lower-casing before tokenisation, BLEU with the script's default smoothing (a zero n-gram
  match count becomes 1/2^k), NIST information weights from all references, and NIST's average
  reference length = total reference words / average number of non-empty references.
* ``route="python"`` (``measure_scores.py -p``, what the LoRA README runs): e2e-metrics'
  ``metrics/pymteval.py``: the same tokeniser with Unicode lower-casing of tokens, n-gram counts that go
  negative for hypotheses shorter than n (``len - n + 1``), an empty hypothesis counted as one empty
  token, and NIST's average reference length summed per segment. NIST differs between the routes
  whenever segments have different numbers of references; BLEU agrees to ~1e-12 on real outputs.

Both are re-implementations, not wrappers: no Perl is needed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

ROUTES = ("perl", "python")

# ---------------------------------------------------------------------------------------------
# Tokenisation (mteval-v13a "tokenization", non-international)
# ---------------------------------------------------------------------------------------------
# Perl's \s on the UTF-8 strings the script reads (Python's \s also matches \x1c-\x1f).
_PERL_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
               + "\u2028\u2029\u202f\u205f\u3000")
_PERL_SPACES = re.compile(f"[{re.escape(_PERL_SPACE)}]+")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PUNCT = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([\.,])")
_PERIOD_COMMA_BEFORE = re.compile(r"([\.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def unescape_entities(text: str) -> str:
    return text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")


def _unescape(text: str) -> str:
    return unescape_entities(text.replace("<skipped>", ""))


def split_punctuation(text: str) -> str:
    """mteval-v13a's punctuation rules (also multi-bleu-detok.perl's ``tokenization``)."""
    text = _PUNCT.sub(r" \1 ", text)
    text = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", text)
    return _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)


def perl_tokenize(text: str) -> list[str]:
    """Tokens as mteval-v13a-sig.pl sees a segment of e2e-metrics' SGML files (lower-cased)."""
    # Reading the SGML file first joins every whitespace run of the document into one space.
    text = _unescape(_PERL_SPACES.sub(" ", text))
    text = split_punctuation(" " + text.translate(ASCII_LOWER) + " ")
    text = _PERL_SPACES.sub(" ", text).strip(" ")
    return text.split(" ") if text else []


def py_tokenize(text: str) -> list[str]:
    """Tokens as pymteval's ``NGramScore.tokenize`` + lower-cased n-grams (note: '' -> [''])."""
    text = re.sub(r"-\n", "", text).replace("\n", " ")
    text = _unescape(text)
    text = split_punctuation(" " + text + " ")
    text = re.sub(r"\s+", " ", text).strip()
    return [tok.lower() for tok in text.split(" ")]


def _ngram_counts(words: Sequence[str], max_n: int) -> dict[tuple, int]:
    """Counts of all 1..max_n-grams, n-grams of each order in order of first occurrence."""
    counts: dict[tuple, int] = {}
    for n in range(1, max_n + 1):
        counts.update(Counter(zip(*[words[i:] for i in range(n)])))
    return counts


def _merged_max(counts: Sequence[dict[tuple, int]]) -> dict[tuple, int]:
    """Elementwise max over the references' n-gram counts (BLEU's clipping counts)."""
    merged: dict[tuple, int] = {}
    for counter in counts:
        for gram, count in counter.items():
            if count > merged.get(gram, 0):
                merged[gram] = count
    return merged


# ---------------------------------------------------------------------------------------------
# Perl route
# ---------------------------------------------------------------------------------------------
_NIST_BETA_PERL = -math.log(0.5) / math.log(1.5) / math.log(1.5)


def _perl_nist_penalty(ratio: float) -> float:
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-_NIST_BETA_PERL * math.log(ratio) * math.log(ratio))


def _closest_ref_length(current: int, ref_len: int, hyp_len: int) -> int:
    """mteval's brevity_penalty_closest: closest length, ties to the shorter; empty refs skipped."""
    if not ref_len:
        return current
    if abs(hyp_len - ref_len) < abs(hyp_len - current):
        return ref_len
    if abs(hyp_len - ref_len) == abs(hyp_len - current) and current > ref_len:
        return ref_len
    return current


def perl_bleu_nist(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU (4-gram, smoothed as the script's default) and NIST (5-gram), Perl-route numbers."""
    n_sets = max(len(r) for r in refs)
    # The script walks references in the sorted order of their sysids: ref_0, ref_1, ref_10, ...
    order = sorted(range(n_sets), key=lambda k: f"ref_{k}") if n_sets > 1 else [0]
    ref_tokens = [[perl_tokenize(r[k]) if k < len(r) else [] for k in order] for r in refs]
    ref_counts = [[_ngram_counts(words, 5) for words in seg_refs] for seg_refs in ref_tokens]

    # NIST information weights from n-gram counts over every reference segment.
    counts: Counter = Counter()
    for seg_counts in ref_counts:
        for ref in seg_counts:
            counts.update(ref)
    total_words = sum(len(words) for seg_refs in ref_tokens for words in seg_refs)
    info_cache: dict[tuple, float] = {}

    def info(ngram: tuple) -> float:
        value = info_cache.get(ngram)
        if value is None:
            prefix = ngram[:-1]
            # Perl tests the prefix string for truth: '' (unigrams) and the word '0' are false.
            if prefix and prefix != ("0",):
                value = -math.log(counts[ngram] / counts[prefix]) / math.log(2)
            else:
                value = -math.log(counts[ngram] / total_words) / math.log(2)
            info_cache[ngram] = value
        return value

    match = [0] * 6
    tst_count = [0] * 6
    tst_info = [0.0] * 6
    ref_length_total = 0
    ref_words_total = 0
    nonempty_refs = 0
    for hyp, seg_refs, seg_counts in zip(hyps, ref_tokens, ref_counts):
        words = perl_tokenize(hyp)
        ref_length = None
        for ref in seg_refs:
            nonempty_refs += bool(ref)
            ref_words_total += len(ref)
            ref_length = len(ref) if ref_length is None else _closest_ref_length(ref_length, len(ref),
                                                                                   len(words))
        ref_length_total += ref_length
        ref_max = _merged_max(seg_counts)
        seg_info = [0.0] * 6
        for ngram, count in _ngram_counts(words, 5).items():
            if ngram in ref_max:
                hits = min(count, ref_max[ngram])
                match[len(ngram)] += hits
                seg_info[len(ngram)] += info(ngram) * hits
        for n in range(1, 6):
            tst_count[n] += max(0, len(words) - n + 1)
            tst_info[n] += seg_info[n]

    # BLEU (bleu_score with the default smoothing)
    exp_len_score = 0.0
    if tst_count[1] > 0:
        exp_len_score = math.exp(min(0, 1 - ref_length_total / tst_count[1]))
    score, smooth = 0.0, 1
    for n in range(1, 5):
        if tst_count[n] == 0:
            iscore = 0.0
        elif match[n] == 0:
            smooth *= 2
            iscore = math.log(1 / (smooth * tst_count[n]))
        else:
            iscore = math.log(match[n] / tst_count[n])
        score += iscore
    bleu = math.exp(score / 4) * exp_len_score

    # NIST (nist_score over the whole system)
    nist_sum = 0.0
    for n in range(1, 6):
        nist_sum += tst_info[n] / max(tst_count[n], 1)
    avg_refs = nonempty_refs / len(hyps)
    if ref_words_total == 0 or avg_refs == 0:
        nist = 0.0  # the script dies dividing by zero here; no reference words means no information
    else:
        nist = nist_sum * _perl_nist_penalty(tst_count[1] / (ref_words_total / avg_refs))
    return {"BLEU": bleu, "NIST": nist}


# ---------------------------------------------------------------------------------------------
# Python route (pymteval)
# ---------------------------------------------------------------------------------------------
_NIST_BETA_PY = -math.log(0.5) / math.log(1.5) ** 2
_TINY, _SMALL = 1e-15, 1e-9


def py_bleu_nist(hyps: Sequence[str], refs: Sequence[Sequence[str]], smoothing: float = 0.0) -> dict[str, float]:
    """pymteval's ``BLEUScore`` (4-gram; ``smoothing=1.0`` is its sentence BLEU) and ``NISTScore``
    (5-gram), each accumulated over the corpus."""
    # BLEU statistics
    hits = [0] * 4
    cand_lens = [0] * 5  # len - n + 1 per order: may go negative, as in pymteval
    ref_len = 0
    # NIST statistics
    ref_ngrams: Counter = Counter()  # the 0-gram () holds the total reference length
    seg_hits: list[list[dict]] = [[] for _ in range(5)]
    avg_ref_len = 0.0
    for hyp, seg_refs in zip(hyps, refs):
        words = py_tokenize(hyp)
        ref_words = [py_tokenize(r) for r in seg_refs]
        ref_counts = [_ngram_counts(r, 5) for r in ref_words]
        ref_max = _merged_max(ref_counts)
        seg = [{} for _ in range(5)]
        for gram, count in _ngram_counts(words, 5).items():
            clipped = min(count, ref_max.get(gram, 0))
            if clipped:
                seg[len(gram) - 1][gram] = clipped
        for n in range(5):
            cand_lens[n] += len(words) - n
            seg_hits[n].append(seg[n])
            if n < 4:
                hits[n] += sum(seg[n].values())
        ref_len += len(min(ref_words, key=lambda r: (abs(len(r) - len(words)), len(r))))
        for counter in ref_counts:
            ref_ngrams.update(counter)
        ref_len_sum = sum(len(r) for r in ref_words)
        ref_ngrams[()] += ref_len_sum
        avg_ref_len += ref_len_sum / float(len(ref_words))

    bp = 1.0
    if cand_lens[0] <= ref_len:
        bp = math.exp(1.0 - ref_len / (float(cand_lens[0]) if cand_lens[0] else 1e-5))
    log_sum = 0.0
    for n_hits, n_len in zip(hits, cand_lens[:4]):
        n_hits = max(n_hits + smoothing, _TINY)
        n_len = max(n_len + smoothing, _SMALL)
        log_sum += math.log(n_hits / n_len)
    bleu = bp * math.exp((1.0 / 4) * log_sum)

    def info(ngram: tuple) -> float:
        if ngram not in ref_ngrams:
            return 0.0
        return math.log(ref_ngrams[ngram[:-1]] / float(ref_ngrams[ngram]), 2)

    nist_sum = 0.0
    for n in range(5):
        hit_info = 0.0
        for seg in seg_hits[n]:
            hit_info += sum(info(g) * h for g, h in seg.items())
        # pymteval divides by zero here (all hypotheses shorter than n+1 words); count such a term as 0
        nist_sum += hit_info / cand_lens[n] if cand_lens[n] else 0.0
    ratio = cand_lens[0] / float(avg_ref_len) if avg_ref_len else 0.0
    if ratio >= 1:
        penalty = 1.0
    elif ratio <= 0:
        penalty = 0.0
    else:
        penalty = math.exp(-_NIST_BETA_PY * math.log(ratio) ** 2)
    return {"BLEU": bleu, "NIST": penalty * nist_sum}


def bleu_nist(hyps: Sequence[str], refs: Sequence[Sequence[str]], route: str = "perl") -> dict[str, float]:
    """{"BLEU", "NIST"} of a corpus: ``route`` is "perl" (default) or "python" (e2e-metrics ``-p``)."""
    if route not in ROUTES:
        raise ValueError(f"unknown mteval route {route!r} (expected one of {ROUTES})")
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps or any(not r for r in refs):
        raise ValueError("BLEU/NIST need at least one segment and one reference per segment")
    if route == "perl":
        return perl_bleu_nist(hyps, refs)
    return py_bleu_nist(hyps, refs)
