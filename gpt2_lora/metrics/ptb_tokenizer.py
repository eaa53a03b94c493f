"""coco-caption's text preparation: Stanford CoreNLP 3.4.1 PTBTokenizer, lower-cased, punctuation dropped.

coco-caption (and so e2e-metrics) runs ``java -cp stanford-corenlp-3.4.1.jar
edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase FILE`` once per corpus and then drops
the tokens in ``PUNCTUATIONS``. We do the same for all sentences not seen before (results are cached
per instance), either with one JVM per call (``route="jar"``) or with ``ptb_lexer``, our Python port
of the same tokenizer (``route="python"``), which gives the jar's output on the same lines (proven on
every sentence of the E2E metric cases, and by random inputs in the tests).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from .java import JavaUnavailable, jar_path, java_available, require_java
from .ptb_lexer import tokenize_lines

ROUTES = ("jar", "python")

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
    """Tokenise sentences as coco-caption does; ``tokenize`` returns space-joined lower-cased tokens.

    ``route``: "jar" (Stanford's jar, needs Java), "python" (``ptb_lexer``), or None: the jar when a
    Java runtime is found, else Python. Both give the same tokens on the same input.
    """

    def __init__(self, route: str | None = None):
        if route is None:
            route = "jar" if java_available() else "python"
        if route not in ROUTES:
            raise ValueError(f"unknown PTB tokenizer route {route!r} (expected one of {ROUTES})")
        self.route = route
        self._cache: dict[str, str] = {}

    def tokenize(self, sentences: Sequence[str]) -> list[str]:
        keys = [_LINE_BREAKS.sub(" ", s) for s in sentences]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if todo:
            lines = run_ptb_jar(todo) if self.route == "jar" else tokenize_lines(todo)
            for key, line in zip(todo, lines):
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


def python_tokenize(sentence: str) -> str:
    """One sentence as coco-caption prepares it (PTBTokenizer -lowerCase, punctuation dropped), in Python."""
    return _coco_filter(tokenize_lines([_LINE_BREAKS.sub(" ", sentence)])[0])
