"""METEOR 1.5 in Python: the same statistics and scores as the jar, without a Java runtime.

``PythonMeteor`` has the interface of ``meteor.Meteor`` (the jar bridge) and computes what the jar
computes for ``-l en -norm``: each segment's hypothesis and references are cleaned as the bridge
sends them (``|||`` dropped, trimmed), normalised and lower-cased; the hypothesis is aligned to each
reference (exact, stem, synonym and paraphrase modules; beam search) and the reference with the best
score gives the segment's statistics. The corpus score adds the statistics up (the jar's
``addStats``); both builds (coco and stock) aggregate that way, so ``variant`` only labels the route.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Sequence

from ..errors import UserError
from . import meteor_stats
from .meteor_aligner import Sentence, align
from .meteor_resources import resources
from .meteor_text import java_lower, java_tokens, java_trim, normalize


@contextlib.contextmanager
def _collector_paused():
    """Pause Python's cycle collector: the aligner makes millions of small lists and tuples (no cycles),
    and collections would rescan the paraphrase and synonym tables every few thousand of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def clean_segment(text: str) -> str:
    """What both routes do to a segment before scoring: line breaks become spaces (one segment stays one
    protocol line for the jar, whose BufferedReader also ends lines at '\r')."""
    return text.replace("\r", " ").replace("\n", " ")


def segment_refs(refs: Sequence[str], num_refs: int | None) -> Sequence[str]:
    """A segment's references as both routes score them: the first ``num_refs`` (when set), at least one."""
    if num_refs is not None:
        if len(refs) < num_refs:
            raise UserError(f"METEOR: a segment has {len(refs)} references, expected {num_refs}")
        refs = refs[:num_refs]
    if not refs:
        raise UserError("METEOR: a segment has no references")
    return refs


def check_variant(variant: str) -> None:
    if variant not in ("coco", "stock"):
        raise ValueError(f"unknown METEOR variant {variant!r} (expected 'coco' or 'stock')")


class PythonMeteor:
    """METEOR 1.5 (English, ``-norm``) in Python. ``close`` and the context manager do nothing."""

    route = "python"

    def __init__(self, variant: str = "coco", num_refs: int | None = None, lang: str = "en",
                 norm: bool = True):
        check_variant(variant)
        if lang != "en" or not norm:
            raise UserError("METEOR in Python covers English with -norm only (lang='en', norm=True)")
        self.variant = variant
        self.num_refs = num_refs
        self._resources = resources()

    def close(self) -> None:
        pass

    def __enter__(self) -> "PythonMeteor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    # -- inputs --------------------------------------------------------------------------------
    def _segment_refs(self, refs: Sequence[str]) -> Sequence[str]:
        return segment_refs(refs, self.num_refs)

    def _words(self, text: str) -> tuple[str, ...]:
        return tuple(java_tokens(java_lower(normalize(java_trim(text), self._resources.prefixes))))

    def _prepare(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]):
        """Each segment as (hypothesis words, [reference words]), as the jar reads the bridge's lines."""
        if len(hyps) != len(refs):
            raise UserError(f"METEOR: {len(hyps)} hypotheses but {len(refs)} reference sets")
        cache: dict[str, tuple[str, ...]] = {}

        def words(text: str) -> tuple[str, ...]:
            if text not in cache:
                cache[text] = self._words(text)
            return cache[text]

        segments = []
        for hyp, seg_refs in zip(hyps, refs):
            hyp = clean_segment(hyp).replace("|||", "").replace("  ", " ")
            segments.append((words(hyp), [words(clean_segment(r).replace("|||", "")) for r in self._segment_refs(seg_refs)]))
        return segments

    # -- scoring -------------------------------------------------------------------------------
    def stats_values(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[tuple[float, ...]]:
        """Each segment's 23 statistics (those of its best-scoring reference)."""
        with _collector_paused():
            return self._stats_values(hyps, refs)

    def _stats_values(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[tuple[float, ...]]:
        segments = self._prepare(hyps, refs)
        corpus = {words: None for hyp, seg_refs in segments for words in (hyp, *seg_refs)}
        phrases = self._resources.paraphrases().for_corpus(corpus)
        sentences: dict[tuple[str, ...], Sentence] = {}

        def sentence(words: tuple[str, ...]) -> Sentence:
            if words not in sentences:
                sentences[words] = Sentence(words, self._resources, phrases)
            return sentences[words]

        out = []
        for hyp, seg_refs in segments:
            best, best_score = None, -1.0
            for ref in seg_refs:
                stats = meteor_stats.from_alignment(align(sentence(hyp), sentence(ref)))
                value = meteor_stats.score(stats)
                if value > best_score:
                    best, best_score = stats, value
            out.append(best)
        return out

    def stats(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[str]:
        """Per-segment statistics lines, as the jar prints them."""
        return [meteor_stats.format_stats(s) for s in self.stats_values(hyps, refs)]

    def score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]],
              segments: bool = False) -> tuple[float, list[float] | None]:
        """(corpus score, per-segment scores or None)."""
        if not hyps:
            raise UserError("METEOR: nothing to score (no segments)")
        values = self.stats_values(hyps, refs)
        seg_scores = [meteor_stats.score(s) for s in values] if segments else None
        return meteor_stats.corpus_score(values), seg_scores

    def corpus_score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
        return self.score(hyps, refs)[0]

    def segment_scores(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[float]:
        return self.score(hyps, refs, segments=True)[1]
