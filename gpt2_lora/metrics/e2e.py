"""The E2E NLG Challenge scorer (tuetschek/e2e-metrics ``measure_scores.py``): inputs and the five metrics.

Inputs, as e2e-metrics reads them:
* references: plain text, one reference per line, instances separated by a blank line (a file without
  blank lines is single-reference: one instance per line), or CSV/TSV (``.csv``/``.tsv``) with an MR
  column and a reference column, references grouped by MR;
* hypotheses: one per line (a blank line is an empty output), or CSV/TSV with MR and output columns
  (then the references are looked up by those MRs).

Metrics: BLEU and NIST (``mteval``, Perl route by default, ``route="python"`` = ``-p``); METEOR
(coco build of the jar, or its Python port), ROUGE-L and CIDEr, all three on PTB-tokenised,
lower-cased text with punctuation removed, as coco-caption prepares it (Stanford's jar or its Python
port). Without Java everything is computed in Python, with the same numbers; nothing is approximate.
"""

from __future__ import annotations

import csv
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import UserError
from ..fileio import read_text
from .java import JavaUnavailable
from .mteval import bleu_nist
from .ptb_tokenizer import PTBTokenizer

METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")

# CSV headers, as e2e-metrics recognises them (matched at the start of a field, case-insensitive)
HEADER_SRC = r"(mr|src|source|meaning(?:[_ .-]rep(?:resentation)?)?|da|dial(?:ogue)?[_ .-]act)s?"
HEADER_SYS = r"(out(?:put)?|ref(?:erence)?|sys(?:tem)?(?:[_ .-](?:out(?:put)?|ref(?:erence)?))?)s?"
HEADER_REF = r"(trg|tgt|target|ref(?:erence)?|human(?:[_ .-](?:ref(?:erence)?))?)s?"
_TABLE = re.compile(r"\.[ct]sv$", re.I)
# Mis-encodings of the E2E data that e2e-metrics repairs in CSV/TSV files
_CSV_FIXES = (("Ł", "£"), ("Â£", "£"), ("Ã©", "é"), ("ã©", "é"))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def read_stripped_lines(path: str | Path, what: str, blank_ok: bool = False) -> list[str]:
    """Lines of a UTF-8 file, each stripped, split like e2e-metrics' codecs reader (str.splitlines).

    An empty file is an error; so is one with only blank lines unless ``blank_ok`` (outputs may
    legitimately all be empty)."""
    text = read_text(path, f"{what} file")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [line.strip() for line in text.splitlines()]
    if not (lines if blank_ok else any(lines)):
        raise UserError(f"{what} file is empty: {path}")
    return lines


def read_multi_refs(path: str | Path) -> list[list[str]]:
    """Blank-line separated reference groups; a file with no blank line is single-reference."""
    groups: list[list[str]] = [[]]
    for line_no, line in enumerate(read_stripped_lines(path, "references"), start=1):
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        else:
            raise UserError(f"{path}:{line_no}: blank line with no references before it "
                            "(instances are separated by exactly one blank line)")
    if not groups[-1]:
        groups.pop()
    if len(groups) == 1:  # no blank lines: one reference per instance
        groups = [[ref] for ref in groups[0]]
    return groups


def read_table(path: str | Path, header_src: str, header_other: str) -> tuple[list[str], list[str]]:
    """(MRs, texts) from a CSV/TSV file with an MR column and a text column (headers optional)."""
    lines = read_stripped_lines(path, "CSV/TSV")
    for bad, good in _CSV_FIXES:
        lines = [line.replace(bad, good) for line in lines]
    lines = [line for line in lines if line]
    rows = list(csv.reader(lines, delimiter="\t" if "\t" in lines[0] else ","))
    src_cols = [i for i, f in enumerate(rows[0]) if re.match(header_src, f, re.I)]
    other_cols = [i for i, f in enumerate(rows[0]) if re.match(header_other, f, re.I)]
    num_cols = len(rows[0])
    if src_cols == other_cols == []:
        if num_cols != 2:
            raise UserError(f"{path}: no recognised header and {num_cols} columns (expected 2: MR, text)")
        src_col, text_col = 0, 1
    elif len(src_cols) == len(other_cols) == 1:
        src_col, text_col = src_cols[0], other_cols[0]
        rows = rows[1:]
    else:
        raise UserError(f"{path}: strange columns: {src_cols} match the MR header pattern and "
                        f"{other_cols} the text header pattern (need exactly one of each)")
    for row_no, row in enumerate(rows, start=1):
        if len(row) != num_cols:
            raise UserError(f"{path}: data row {row_no} has {len(row)} columns, expected {num_cols}")
    return [row[src_col] for row in rows], [row[text_col] for row in rows]


def read_table_refs(path: str | Path, hyp_srcs: Sequence[str]) -> list[list[str]]:
    srcs, texts = read_table(path, HEADER_SRC, HEADER_REF)
    if any(hyp_srcs):  # the outputs name their MRs: look references up by MR
        by_src: dict[str, list[str]] = {}
        for src, text in zip(srcs, texts):
            by_src.setdefault(src, []).append(text)
        missing = [src for src in hyp_srcs if src not in by_src]
        if missing:
            raise UserError(f"{path}: no reference for MR {missing[0]!r} ({len(missing)} MRs missing)")
        return [by_src[src] for src in hyp_srcs]
    groups: list[list[str]] = []  # otherwise group consecutive rows with the same MR
    current = None
    for src, text in zip(srcs, texts):
        if src != current or not groups:
            groups.append([text])
            current = src
        else:
            groups[-1].append(text)
    return groups


def load_data(ref_path: str | Path, hyp_path: str | Path) -> tuple[list[str], list[list[str]], list[str]]:
    """(MRs or '' each, reference groups, hypotheses), checked to line up."""
    if _TABLE.search(str(hyp_path)):
        srcs, hyps = read_table(hyp_path, HEADER_SRC, HEADER_SYS)
    else:
        hyps = read_stripped_lines(hyp_path, "hypotheses", blank_ok=True)
        srcs = [""] * len(hyps)
    if _TABLE.search(str(ref_path)):
        refs = read_table_refs(ref_path, srcs)
    else:
        refs = read_multi_refs(ref_path)
    if len(refs) != len(hyps):
        raise UserError(f"{ref_path} has {len(refs)} instances but {hyp_path} has {len(hyps)} "
                        "hypotheses (references: one per line, a blank line between instances)")
    return srcs, refs, hyps


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
@dataclass
class E2EResult:
    scores: dict[str, float | None]            # BLEU NIST METEOR ROUGE_L CIDEr (None = unavailable)
    approximate: tuple[str, ...] = ()          # metrics not computed as the official scorer does (none now)
    notes: list[str] = field(default_factory=list)


class _Background(threading.Thread):
    """Run ``fn`` in a thread (a JVM does the work, so the GIL is free); ``result()`` re-raises."""

    def __init__(self, fn: Callable[[], object]):
        super().__init__(daemon=True)
        self._fn, self._value, self._error = fn, None, None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as err:  # handed to the caller in result()
            self._error = err

    def result(self):
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def _tokenize(tokenizer: PTBTokenizer, sentences: list[str], route: str | None, result: E2EResult) -> list[str]:
    """coco-caption's tokens; a jar that fails on its own choice of route falls back to Python."""
    try:
        return tokenizer.tokenize(sentences)
    except JavaUnavailable as err:
        if route == "jar":
            raise
        result.notes.append(f"PTB tokenizer jar failed ({err}); tokenised in Python instead (same tokens)")
        return PTBTokenizer(route="python").tokenize(sentences)


def e2e_scores(refs: Sequence[Sequence[str]], hyps: Sequence[str], route: str = "perl",
               meteor=None, tokenizer: PTBTokenizer | None = None,
               use_java: bool | None = None, log: Callable[[str], None] | None = None,
               meteor_route: str | None = None, tokenizer_route: str | None = None) -> E2EResult:
    """All five E2E metrics. ``meteor`` (a coco ``Meteor`` or ``PythonMeteor``) and ``tokenizer`` may be
    shared across calls; by default a scorer is opened here and closed at the end.

    METEOR and the PTB tokenizer each run as the jar or in Python (``meteor_route``,
    ``tokenizer_route``: "jar" or "python"; None: the jar when Java is available, else Python; the
    routes give the same numbers). ``use_java=False`` takes Python for both. ``log`` receives progress
    messages (the module itself prints nothing)."""
    from .meteor import MeteorUnavailable, open_meteor

    log = log or (lambda message: None)
    if len(refs) != len(hyps):
        raise UserError(f"{len(refs)} reference groups but {len(hyps)} hypotheses")
    if not hyps:
        raise UserError("nothing to score: no hypotheses")
    if any(not group for group in refs):
        raise UserError("every instance needs at least one reference")
    if use_java is False:
        meteor_route, tokenizer_route = meteor_route or "python", tokenizer_route or "python"
    result = E2EResult(scores=dict.fromkeys(METRICS))
    own_meteor = None
    if meteor is None:
        try:  # a JVM starts first: it loads the paraphrase table while we do the rest
            meteor, notes = open_meteor("coco", route=meteor_route)
            own_meteor = meteor
            result.notes.extend(notes)
        except MeteorUnavailable as err:
            if meteor_route == "jar":  # asked for by name: an error, not a silent n/a
                raise
            result.notes.append(str(err))
    try:
        ref_flat = [ref for group in refs for ref in group]
        tokenizer = tokenizer or PTBTokenizer(route=tokenizer_route)
        sentences = list(ref_flat) + list(hyps)
        tokenized = None
        if tokenizer.route == "jar":  # the JVM works while BLEU/NIST are computed here
            tokenized = _Background(lambda: _tokenize(tokenizer, sentences, tokenizer_route, result))
        log(f"BLEU/NIST ({route} route) on {len(hyps)} instances, {len(ref_flat)} references")
        result.scores.update(bleu_nist(hyps, refs, route=route))
        if tokenized is None:
            log("PTB tokenizer (Python)")
        tokens = tokenized.result() if tokenized is not None else tokenizer.tokenize(sentences)
        tok_refs, start = [], 0
        for group in refs:
            tok_refs.append(tokens[start:start + len(group)])
            start += len(group)
        tok_hyps = tokens[start:]
        _rouge_cider_meteor(result, tok_hyps, tok_refs, meteor, log)
    finally:
        if own_meteor is not None:
            own_meteor.close()
    return result


def _rouge_cider_meteor(result: E2EResult, tok_hyps, tok_refs, meteor, log) -> None:
    """ROUGE-L and CIDEr here; METEOR in a thread when the jar computes it (the JVM frees the GIL)."""
    from .cider import cider
    from .meteor import MeteorUnavailable
    from .rouge import rouge_l

    scoring = None
    if meteor is not None and meteor.route == "jar":
        log("METEOR (coco meteor-1.5.jar)")
        scoring = _Background(lambda: meteor.corpus_score(tok_hyps, tok_refs))
    result.scores["ROUGE_L"] = rouge_l(tok_hyps, tok_refs)[0]
    result.scores["CIDEr"] = cider(tok_hyps, tok_refs)[0]
    try:
        if scoring is not None:
            result.scores["METEOR"] = scoring.result()
        elif meteor is not None:
            log("METEOR (Python)")
            result.scores["METEOR"] = meteor.corpus_score(tok_hyps, tok_refs)
    except MeteorUnavailable as err:
        result.notes.append(str(err))
