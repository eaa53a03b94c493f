"""METEOR 1.5's English resources, read at run time from the jar in the pycocoevalcap wheel (a zip file).

* ``function/english.words``: the function words (the ``delta`` weighting of METEOR's lengths);
* ``synonym/english.synsets`` and ``english.exceptions``: WordNet synsets per word and irregular forms,
  with ``synsets_of_stem`` giving the jar's ``getStemSynSets`` (irregular bases, else WordNet's
  suffix rules);
* ``nonbreaking/english.prefixes``: the normalizer's non-breaking prefixes;
* the paraphrase table, next to the jar (``meteor_paraphrase``).
"""

from __future__ import annotations

import functools
import re
import zipfile
from pathlib import Path

from ..errors import UserError
from .java import JARS, JavaUnavailable, jar_path
from .meteor_paraphrase import ParaphraseTable
from .meteor_text import java_tokens, parse_prefixes

_JAVA_LINE_END = re.compile("\r\n|\r|\n")  # BufferedReader.readLine's line ends
# WordNet's morphology (nouns, verbs, adjectives): try each suffix -> ending in turn
_MORPH_RULES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                ("men", "man"), ("ies", "y"), ("s", ""), ("ies", "y"), ("es", "e"), ("es", ""),
                ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", ""), ("er", ""), ("est", ""), ("er", "e"),
                ("est", "e"))
_EMPTY: frozenset[int] = frozenset()


def _java_lines(text: str) -> list[str]:
    lines = _JAVA_LINE_END.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _utf16_length(word: str) -> int:
    return len(word) + sum(1 for ch in word if ord(ch) > 0xFFFF)


class Synonyms:
    """WordNet synonym sets as the jar's ``SynonymDictionary`` holds them."""

    def __init__(self, synsets_text: str, exceptions_text: str):
        lines = _java_lines(synsets_text)
        if len(lines) % 2:
            raise UserError("METEOR synonym file: odd number of lines (not the pycocoevalcap 1.2 jar)")
        self._raw = dict(zip(lines[0::2], lines[1::2]))  # word -> its synset numbers, parsed on use
        self._bases: dict[str, list[str]] = {}
        lines = _java_lines(exceptions_text)
        for base, forms in zip(lines[0::2], lines[1::2]):
            for form in java_tokens(forms):
                self._bases.setdefault(form, []).append(base)

    @functools.lru_cache(maxsize=1 << 16)
    def synsets(self, word: str) -> frozenset[int]:
        raw = self._raw.get(word)
        return _EMPTY if raw is None else frozenset(int(x) for x in java_tokens(raw))

    @functools.lru_cache(maxsize=1 << 16)
    def synsets_of_stem(self, word: str) -> frozenset[int]:
        bases = self._bases.get(word)
        if bases is not None:
            return frozenset().union(*(self.synsets(b) for b in bases))
        return self.synsets(self._morph(word))

    def _morph(self, word: str) -> str:
        """The first WordNet base form of ``word`` that has synsets, "" if none (the jar's ``morph``)."""
        if word.endswith("ss") or _utf16_length(word) <= 2:
            return word
        for suffix, ending in _MORPH_RULES:
            if word.endswith(suffix):
                base = word[:len(word) - len(suffix)] + ending
                if base in self._raw:
                    return base
        return ""

    @functools.lru_cache(maxsize=1 << 16)
    def synonym_sets(self, word: str) -> frozenset[int]:
        """What the synonym matcher compares: the word's own synsets and those of its base forms."""
        return self.synsets(word) | self.synsets_of_stem(word)


class MeteorResources:
    """Everything METEOR's English task reads, from the pinned pycocoevalcap 1.2 files."""

    def __init__(self):
        try:
            jar = jar_path("meteor_coco")
            paraphrase = jar_path("paraphrase_en", verify=False)  # ParaphraseTable checks it
        except JavaUnavailable as err:
            raise UserError(f"METEOR unavailable: {err}") from None
        with zipfile.ZipFile(jar) as archive:
            text = {name: archive.read(name).decode("utf-8") for name in (
                "function/english.words", "synonym/english.synsets", "synonym/english.exceptions",
                "nonbreaking/english.prefixes")}
        self.function_words = frozenset(_java_lines(text["function/english.words"]))
        self.synonyms = Synonyms(text["synonym/english.synsets"], text["synonym/english.exceptions"])
        self.prefixes = parse_prefixes(_java_lines(text["nonbreaking/english.prefixes"]))
        self._paraphrase_file: Path = paraphrase
        self._paraphrases: ParaphraseTable | None = None

    def paraphrases(self) -> ParaphraseTable:
        if self._paraphrases is None:
            self._paraphrases = ParaphraseTable.load(self._paraphrase_file, JARS["paraphrase_en"][1])
        return self._paraphrases


@functools.lru_cache(maxsize=1)
def resources() -> MeteorResources:
    """One copy per process (reading the jar takes a fraction of a second)."""
    return MeteorResources()
