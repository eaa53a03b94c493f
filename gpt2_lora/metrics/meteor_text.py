"""METEOR 1.5's text handling in Python: ``-norm`` (English, punctuation kept), Java's lower-casing,
``String.trim`` and ``StringTokenizer`` word splitting, and ``String.hashCode`` (the aligner's word keys).

``normalize`` follows the jar's ``Normalizer.normalizeLine`` step by step: Java regular expressions
are written out with their Java meaning (``\\s`` is ASCII white space, ``\\p{Digit}`` is 0-9,
``\\p{Lower}`` is a-z). The non-breaking prefix list comes from the jar (``nonbreaking/english.prefixes``).
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

# The normalizer's letters: Latin-1 and Latin Extended-A letters, Cyrillic and phonetic ranges
_ALPHA = ("A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e"
          "\u0400-\u04ff\u0500-\u0527\ua640-\ua66e\ua67e-\ua697\u1d00-\u1d7f")
_ALNUM = "0-9" + _ALPHA
_JAVA_SPACE = " \t\n\x0b\x0c\r"  # Java regex \s

_SEPARATE_OTHER = re.compile(f"([^{_ALNUM}{_JAVA_SPACE}.'`,\\-\u2018\u2019])")
_MULTI_DOT = re.compile(r"\.(\.+)")
_MULTI_DOT2 = re.compile(r"DOTMULTI\.([^.])")
_COMMA = re.compile(r"([^0-9]),([^0-9])")
_COMMA2 = re.compile(r"([0-9]),([^0-9])")
_COMMA3 = re.compile(r"([^0-9]),([0-9])")
_QUOTE = re.compile("[`\u2018\u2019]")
_DOUBLE_QUOTE = re.compile("[\u201c\u201d]|''")
_DASH_BETWEEN = re.compile(f"([{_ALNUM}.])-([{_ALNUM}])")
_APOS_NONE = re.compile(f"([^{_ALPHA}])'([^{_ALPHA}])")
_APOS_BEFORE_LETTER = re.compile(f"([^{_ALPHA}0-9])'([{_ALPHA}])")
_APOS_AFTER_LETTER = re.compile(f"([{_ALPHA}])'([^{_ALPHA}])")
_APOS_INSIDE = re.compile(f"([{_ALPHA}])'([{_ALPHA}])")
_APOS_DECADE = re.compile("([0-9])'(s)")
_LETTER = re.compile(f"[{_ALPHA}]")
_WHITE = re.compile("[ \u2000-\u200a\u202f\u205f\u3000\u00a0]+")
_TOKEN_DELIMITERS = re.compile("[ \t\n\r\x0c]+")  # java.util.StringTokenizer's defaults
_NBP_ANY, _NBP_NUMERIC_ONLY = 1, 2


def java_trim(text: str) -> str:
    """``String.trim``: drop characters up to U+0020 at both ends."""
    start, end = 0, len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


def java_tokens(text: str) -> list[str]:
    """``new StringTokenizer(text)``'s tokens."""
    return [t for t in _TOKEN_DELIMITERS.split(text) if t]


def java_lower(text: str) -> str:
    """``String.toLowerCase()`` in an English locale.

    Python's rules, which are Java's except for a capital sigma followed by a cased letter later in
    the same word past a hyphen, period, apostrophe or underscore (Java keeps it medial, Python makes
    it final) and for letters newer than Java's Unicode tables.
    """
    return text.lower()


@functools.lru_cache(maxsize=1 << 17)
def java_hash(word: str) -> int:
    """``String.hashCode`` (over UTF-16 code units, as a signed 32-bit int)."""
    h = 0
    for ch in word:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            h = (31 * h + (0xD800 + (code >> 10))) & 0xFFFFFFFF
            code = 0xDC00 + (code & 0x3FF)
        h = (31 * h + code) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def parse_prefixes(lines: Iterable[str]) -> dict[str, int]:
    """The normalizer's non-breaking prefixes: word -> any / numeric-only (``#NUMERIC_ONLY#``)."""
    prefixes = {}
    for line in lines:
        fields = java_tokens(line)
        if not fields or fields[0].startswith("#"):
            continue
        numeric = len(fields) > 1 and fields[1] == "#NUMERIC_ONLY#"
        prefixes[fields[0]] = _NBP_NUMERIC_ONLY if numeric else _NBP_ANY
    return prefixes


def _escape_dots(line: str) -> str:
    line = _MULTI_DOT.sub(r" DOTMULTI\1", line)
    while "DOTMULTI." in line:
        line = _MULTI_DOT2.sub(r"DOTDOTMULTI \1", line)
        line = line.replace("DOTMULTI.", "DOTDOTMULTI")
    return line


def _split_contractions(line: str) -> str:
    # English splits contractions to the right: it 's, do n't (as "don 't" here), 1990 's
    line = _APOS_NONE.sub(r"\1 ' \2", line)
    line = _APOS_BEFORE_LETTER.sub(r"\1 ' \2", line)
    line = _APOS_AFTER_LETTER.sub(r"\1 ' \2", line)
    line = _APOS_INSIDE.sub(r"\1 '\2", line)
    return _APOS_DECADE.sub(r"\1 '\2", line)


def _break_periods(words: list[str], prefixes: dict[str, int]) -> str:
    """Split a word's final period unless it is a non-breaking prefix (or U.S.-style, or before a
    lower-case word); U.S. loses its dots."""
    out = []
    for i, word in enumerate(words):
        if len(word) > 1 and word.endswith("."):
            stem = word[:-1]
            kind = prefixes.get(stem)
            following = words[i + 1] if i + 1 < len(words) else None
            if "." in stem and _LETTER.search(stem):
                out.append(word.replace(".", ""))
            elif kind == _NBP_ANY or (following is not None and "a" <= following[0] <= "z"):
                out.append(word)
            elif kind == _NBP_NUMERIC_ONLY and following is not None and "0" <= following[0] <= "9":
                out.append(word)
            else:
                out.append(stem + " .")
        else:
            out.append(word)
    return "".join(w + " " for w in out)


def normalize(line: str, prefixes: dict[str, int]) -> str:
    """``Normalizer.normalizeLine(line, English, keepPunctuation=true)``."""
    line = _SEPARATE_OTHER.sub(r" \1 ", f" {line} ")
    line = _escape_dots(line)
    line = _COMMA.sub(r"\1 , \2", line)
    line = _COMMA2.sub(r"\1 , \2", line)
    line = _COMMA3.sub(r"\1 , \2", line)
    line = _QUOTE.sub("'", line)
    line = _DOUBLE_QUOTE.sub(' " ', line)
    line = line.replace("\u2013", "-").replace("--", "-")
    line = _DASH_BETWEEN.sub(r"\1 \2", line)
    line = _split_contractions(line)
    line = _break_periods(java_tokens(line), prefixes)
    while "DOTDOTMULTI" in line:
        line = line.replace("DOTDOTMULTI", "DOTMULTI.")
    line = line.replace("DOTMULTI", ".")
    return java_trim(_WHITE.sub(" ", line))
