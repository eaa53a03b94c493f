"""sacreBLEU's BLEU and chrF, with their signatures (the scores to quote for your own data).

References come grouped per instance, as the E2E scorer reads them. sacrebleu wants reference
*streams* (stream k holds every instance's k-th reference); an instance with fewer references than
the most is padded with None, which sacrebleu skips (signature ``nrefs:var``). An empty string would
count as a real, empty reference. Scores are on sacrebleu's 0-100 scale, with its default settings
(BLEU: 13a tokenisation, exp smoothing, mixed case; chrF: character 6-grams, beta 2).
"""

from __future__ import annotations

from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF

from ..errors import UserError


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-instance reference groups -> sacrebleu's streams, ragged groups padded with None."""
    width = max(len(group) for group in references)
    return [[group[k] if k < len(group) else None for group in references] for k in range(width)]


def sacrebleu_scores(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> dict:
    """{"sacreBLEU": float, "chrF": float, "signatures": {"sacreBLEU": str, "chrF": str}}."""
    if len(references) != len(hypotheses):
        raise UserError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses")
    if not hypotheses:
        raise UserError("no hypotheses to score")
    empty = [i for i, group in enumerate(references) if not group]
    if empty:
        raise UserError(f"instance {empty[0] + 1} has no reference ({len(empty)} such instance(s))")
    streams = reference_streams(references)
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), streams)
    chrf_score = chrf.corpus_score(list(hypotheses), streams)
    return {"sacreBLEU": bleu_score.score, "chrF": chrf_score.score,
            "signatures": {"sacreBLEU": str(bleu.get_signature()), "chrF": str(chrf.get_signature())}}
