"""coco-caption's text preparation: Stanford CoreNLP 3.4.1 PTBTokenizer, lower-cased, punctuation dropped.

coco-caption (and so e2e-metrics) runs ``java -cp stanford-corenlp-3.4.1.jar
edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase FILE`` once per corpus and then drops
the tokens in ``PUNCTUATIONS``. We do the same with one JVM per call for all sentences not seen
before (results are cached per instance), so scoring a corpus costs one JVM start.

Without Java, ``approximate_tokenize`` is a pure-Python imitation of the PTBTokenizer rules that matter
for E2E-style English; ROUGE-L and CIDEr computed on it are approximations, and are reported as such.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from .java import JavaUnavailable, jar_path, require_java

# Tokens coco-caption removes after tokenising. Note that -lowerCase turns -LRB- into -lrb-, so the
# bracket entries never match: brackets survive as -lrb-/-rrb-, exactly as in coco-caption.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# Characters the PTB lexer treats as line ends; inside a sentence they would split it in two.
_LINE_BREAKS = re.compile("\r\n|[\r\n\u000b\u000c\u2028\u2029]")
_JVM_LOCALE = ["-Duser.language=en", "-Duser.country=US"]  # -lowerCase uses the JVM's locale


def _coco_filter(line: str) -> str:
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


class PTBTokenizer:
    """Tokenise sentences as coco-caption does; ``tokenize`` returns space-joined lower-cased tokens."""

    def __init__(self):
        self._cache: dict[str, str] = {}

    def tokenize(self, sentences: Sequence[str]) -> list[str]:
        keys = [_LINE_BREAKS.sub(" ", s) for s in sentences]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if todo:
            for key, line in zip(todo, run_ptb_jar(todo)):
                self._cache[key] = _coco_filter(line)
        return [self._cache[k] for k in keys]


def run_ptb_jar(lines: Sequence[str]) -> list[str]:
    """Raw PTBTokenizer output (``-preserveLines -lowerCase``), one line per input line."""
    java = require_java()
    jar = jar_path("corenlp")
    with tempfile.TemporaryDirectory(prefix="ptb-") as tmp:
        path = Path(tmp) / "sentences.txt"
        path.write_text("\n".join(lines), encoding="utf-8")
        cmd = [java, *_JVM_LOCALE, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", "-encoding", "utf-8", str(path)]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True)
        except OSError as err:
            raise JavaUnavailable(f"cannot start {java}: {err}") from None
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise JavaUnavailable(f"PTBTokenizer failed (exit code {proc.returncode}): "
                              f"{message[-1] if message else 'no message'}")
    out = proc.stdout.decode("utf-8").split("\n")
    if len(out) != len(lines):
        raise JavaUnavailable(f"PTBTokenizer returned {len(out)} lines for {len(lines)} sentences")
    return out


# ---------------------------------------------------------------------------------------------
# Pure-Python approximation (used only without Java)
# ---------------------------------------------------------------------------------------------
# Words whose final period the PTB lexer keeps (a subset of its abbreviation lists).
_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st jr sr co corp inc ltd vs etc fig figs jan feb mar apr jun jul aug sep sept
oct nov dec mt ft ave blvd rd gen gov sen rep rev capt col lt sgt approx dept est
""".split())
_CURRENCY = {"£": "#", "€": "$", "¢": "cents"}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_CONTRACTION = re.compile(r"(?i)^(.+?)(n't|'s|'re|'m|'ll|'ve|'d)$")
_SPECIAL_SPLITS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "wanna": ["wan", "na"],
                   "gotta": ["got", "ta"]}
_TOKEN = re.compile(r"""
    https?://\S+ | www\.\S+                                     # URLs stay whole
  | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                                # e-mail addresses
  | (?:[a-z]\.){2,}                                             # acronyms: u.k. i.b.m.
  | (?<!\w)-\d+ | \d+(?:[.,:/-]\d+)+                              # -25 5.50 3,000 1/2 20-25 10:30
  | \.\.\.+ | -{2,} | [?!]+                                     # runs of punctuation
  | ``|''                                                       # latex quotes
  | '(?:s|re|m|ll|ve|d)(?!\w) | n't(?!\w)                       # detached clitics: it 's, do n't
  | [\w]+(?:[-'&/][\w]+)*'?                                      # words, incl. 5-star, o'clock, at&t
  | \S
""", re.VERBOSE)


def _split_word(word: str) -> list[str]:
    if word in _SPECIAL_SPLITS:
        return list(_SPECIAL_SPLITS[word])
    match = _CONTRACTION.match(word)
    if match and match.group(1).isalpha():
        return [match.group(1), match.group(2)]
    if word.endswith("'") and len(word) > 1 and word[:-1].isalpha() and not word.startswith("'"):
        return [word[:-1], "'"]  # kids' -> kids '
    return [word]


def _keeps_period(piece: str) -> bool:
    # The lexer keeps the period of known abbreviations, single letters ("b.") and acronyms ("u.k.").
    stem = piece[:-1]
    return piece.endswith(".") and (stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())
                                     or re.fullmatch(r"(?:[a-z]\.)+[a-z]", stem) is not None)


def approximate_tokenize(sentence: str) -> str:
    """Imitate PTBTokenizer -lowerCase + coco's punctuation removal, in pure Python."""
    text = _LINE_BREAKS.sub(" ", sentence).lower().replace("&amp;", "&")
    text = text.replace("\u2026", "...").replace("\u0085", "...")
    text = text.replace("\u2018", "'").replace("\u2019", "'")  # the lexer makes curly quotes ASCII
    tokens: list[str] = []
    for piece in text.split():
        if _keeps_period(piece):
            tokens.append(piece)
            continue
        for tok in _TOKEN.findall(piece):
            if tok in _CURRENCY:
                tokens.append(_CURRENCY[tok])
            elif tok in _BRACKETS:
                tokens.append(_BRACKETS[tok])
            elif tok in ('"', "\u201c", "\u201d", "`"):
                continue  # quotes become `` '' ` ', all of which coco drops
            else:
                tokens.extend(_split_word(tok))
    return _coco_filter(" ".join(tokens))
