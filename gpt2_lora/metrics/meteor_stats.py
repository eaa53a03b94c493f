"""METEOR 1.5's sufficient statistics and score (``MeteorStats``, ``MeteorScorer.computeMetrics``).

A segment's statistics are 23 counts, in the jar's printed order: test and reference length, their
function words, then per module (exact, stem, synonym, paraphrase) the test content, reference
content, test function and reference function words matched, then chunks and the test and reference
words matched. The score is computed with Java's double arithmetic in the jar's order (a division by
zero gives an infinity or NaN, and a NaN score is 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

STATS_LENGTH = 23
CHUNKS, TEST_WORDS, REF_WORDS = 20, 21, 22


@dataclass(frozen=True)
class MeteorParameters:
    """The English ranking task's settings (``-l en``): alpha, beta, gamma, delta and module weights."""

    alpha: float = 0.85
    beta: float = 0.20
    gamma: float = 0.60
    delta: float = 0.75
    weights: tuple[float, ...] = (1.0, 0.6, 0.8, 0.6)


ENGLISH = MeteorParameters()


def from_alignment(alignment) -> tuple[float, ...]:
    """``MeteorScorer.getMeteorStats(alignment)`` (word counts, not characters)."""
    values = [alignment.length1, alignment.length2, alignment.function1, alignment.function2]
    for module in range(4):
        values += [alignment.content_matches1[module], alignment.content_matches2[module],
                   alignment.function_matches1[module], alignment.function_matches2[module]]
    test_words = sum(alignment.content_matches1) + sum(alignment.function_matches1)
    ref_words = sum(alignment.content_matches2) + sum(alignment.function_matches2)
    return tuple(float(v) for v in values + [alignment.chunks, test_words, ref_words])


def _div(a: float, b: float) -> float:
    """Java's double division: x/0 is an infinity of x's sign, 0/0 is NaN."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _totals(stats: Sequence[float]) -> tuple[float, float]:
    test = ref = 0.0
    for module in range(4):
        base = 4 + 4 * module
        test += stats[base] + stats[base + 2]
        ref += stats[base + 1] + stats[base + 3]
    return test, ref


def score(stats: Sequence[float], params: MeteorParameters = ENGLISH) -> float:
    """``computeMetrics``: precision, recall, F-mean, fragmentation penalty, score (>= 0)."""
    delta, weights = params.delta, params.weights
    test_len, ref_len, test_fn, ref_fn = stats[0], stats[1], stats[2], stats[3]
    test_weighted_len = delta * (test_len - test_fn) + (1.0 - delta) * test_fn
    ref_weighted_len = delta * (ref_len - ref_fn) + (1.0 - delta) * ref_fn
    test_matches = ref_matches = 0.0
    for i, w in enumerate(weights):
        test_matches += stats[4 + 4 * i] * w * delta
    for i, w in enumerate(weights):
        ref_matches += stats[5 + 4 * i] * w * delta
    for i, w in enumerate(weights):
        test_matches += stats[6 + 4 * i] * w * (1.0 - delta)
    for i, w in enumerate(weights):
        ref_matches += stats[7 + 4 * i] * w * (1.0 - delta)
    precision = _div(test_matches, test_weighted_len)
    recall = _div(ref_matches, ref_weighted_len)
    f_mean = _div(1.0, _div(1.0 - params.alpha, precision) + _div(params.alpha, recall))
    test_total, ref_total = _totals(stats)
    if test_total == test_len and ref_total == ref_len and stats[CHUNKS] == 1:
        frag = 0.0
    else:
        frag = _div(stats[CHUNKS], (stats[TEST_WORDS] + stats[REF_WORDS]) / 2)
    value = f_mean * (1.0 - params.gamma * frag ** params.beta)
    return 0.0 if math.isnan(value) else max(value, 0.0)


def add(total: list[float], stats: Sequence[float]) -> None:
    """``MeteorStats.addStats``: sum every count, except the chunk of a segment matched completely
    in one chunk (all words of both sides matched, one chunk)."""
    test_total, ref_total = _totals(stats)
    perfect = test_total == stats[0] and ref_total == stats[1] and stats[CHUNKS] == 1.0
    for i, value in enumerate(stats):
        if i != CHUNKS or not perfect:
            total[i] += value


def corpus_score(segments: Sequence[Sequence[float]], params: MeteorParameters = ENGLISH) -> float:
    total = [0.0] * STATS_LENGTH
    for stats in segments:
        add(total, stats)
    return score(total, params)


def format_stats(stats: Sequence[float]) -> str:
    """The jar's statistics line (``Double.toString`` of each count, space separated)."""
    return " ".join(_java_double(v) for v in stats)


def parse_stats(line: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in line.split())
    if len(values) != STATS_LENGTH:
        raise ValueError(f"METEOR statistics need {STATS_LENGTH} numbers, got {len(values)}: {line!r}")
    return values


def _java_double(value: float) -> str:
    if value == int(value) and abs(value) < 1e7:
        return f"{int(value)}.0"
    return repr(value)  # never a count the aligner produces (Java would print 1.0E7 style here)
