"""Stanford CoreNLP 3.4.1's PTBTokenizer in Python, as coco-caption runs it (``-preserveLines -lowerCase``).

The lexer reads the whole text as one stream, as the jar does (a token's trailing context may look
across a line end), and at each position takes the longest match over all rules of ``ptb_rules``,
the earlier rule winning a tie; a rule's trailing context counts towards the length but not the
token, and the token is the longest head that leaves a matching trailing context (JFlex's rule).
Each rule's action then rewrites the token as the lexer's action does with coco-caption's options:
PTB3 escaping (brackets, quotes, dashes, ellipses, currency, fractions, ``&amp;``), soft hyphens
removed, the sentence-final period of an abbreviation repeated as a token of its own, unknown
characters dropped. Tokens are then lower-cased with English rules (``toLowerCase(Locale.ENGLISH)``).

Known limits: character classes follow Python's Unicode tables, not Java 7's, so letters added to
Unicode since differ; text is lexed in UTF-16 code units as the jar does, so characters beyond the
BMP are dropped as the jar drops them.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import regex

from .ptb_rules import RULES

_NBSP = "\u00a0"
_NEWLINE = object()  # the lexer's newline token: ends an output line under -preserveLines
_LATEX_LEFT = (("&apos;", "`"), ("'", "`"), ('"', "``"), ("&quot;", "``"))
_LATEX_RIGHT = (("&apos;", "'"), ("'", "'"), ('"', "''"), ("&quot;", "''"))
_CURLY = str.maketrans({"\u0091": "`", "\u2018": "`", "\u201b": "`", "\u2039": "`",
                        "\u0092": "'", "\u2019": "'", "\u203a": "'",
                        "\u0093": "``", "\u201c": "``", "\u00ab": "``",
                        "\u0094": "''", "\u201d": "''", "\u00bb": "''"})
_CURRENCY = str.maketrans({"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$",
                           "\u20ac": "$"})
_FRACTIONS = str.maketrans({"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"})
_PARENS = str.maketrans({"(": "-LRB-", ")": "-RRB-"})
_BRACKETS = {"{": "-LCB-", "}": "-RCB-", "[": "-LSB-", "]": "-RSB-", "(": "-LRB-", ")": "-RRB-"}
_AMP = regex.compile("&amp;", regex.IGNORECASE)
_QUOTE_SOURCES = regex.compile("&apos;|'|\"|&quot;")


def _remove_soft_hyphens(token: str) -> str:
    if "\u00ad" not in token:
        return token
    return token.replace("\u00ad", "") or "-"  # the lexer never makes an empty token


def _quotes(token: str, left: bool) -> str:
    """latexQuotes: ' and " become ` `` (probably opening) or ' '' ; curly quotes become ASCII."""
    table = dict(_LATEX_LEFT if left else _LATEX_RIGHT)
    token = _QUOTE_SOURCES.sub(lambda m: table[m.group()], token)
    return token.translate(_CURLY)


def _amp(token: str) -> str:
    return _AMP.sub("&", token)


# rule name -> how the token text is rewritten (rules not listed keep their text)
_REWRITE: dict[str, Callable[[str], str]] = {
    "sgml": lambda t: t.replace(" ", _NBSP),
    "spmdash": lambda t: "--",
    "spamp": _amp, "tbspec": _amp, "thinga./insentp": _amp, "thinga": _amp,
    "word/redaux": _remove_soft_hyphens, "sword/sredaux": _remove_soft_hyphens, "word": _remove_soft_hyphens,
    "number": _remove_soft_hyphens, "word./insentp": _remove_soft_hyphens,
    "hthing./insentp": _remove_soft_hyphens, "hthing": _remove_soft_hyphens,
    "redaux/nonletter": lambda t: _quotes(t, False), "sredaux/nonletter": lambda t: _quotes(t, False),
    "redaux": lambda t: _quotes(t, False), "sredaux": lambda t: _quotes(t, False),
    "quotes": lambda t: _quotes(t, False), "dblquot": lambda t: _quotes(t, False),
    "dblquot/left": lambda t: _quotes(t, True), "'/letter": lambda t: _quotes(t, True),
    "frac": lambda t: t.replace(" ", _NBSP),
    "frac2": lambda t: t.translate(_FRACTIONS),
    "dolsign2": lambda t: t.translate(_CURRENCY),
    "phone": lambda t: t.replace(" ", _NBSP).translate(_PARENS),
    "smiley": lambda t: t.translate(_PARENS), "asiansmiley": lambda t: t.translate(_PARENS),
    "{": _BRACKETS.get, "}": _BRACKETS.get, "[": _BRACKETS.get, "]": _BRACKETS.get,
    "(": _BRACKETS.get, ")": _BRACKETS.get,
    "lessthan": lambda t: "<", "greaterthan": lambda t: ">",
    "hyphens": lambda t: "--" if 3 <= len(t) <= 4 else t,
    "ldots": lambda t: "...",
}
_SKIP = frozenset({"delete", "space", "nbsp", "untokenizable"})
# rules whose action gives back characters to be lexed again: cannot -> can + not, gonna -> gon + na
_PUSHBACK = {"cannot": 3, "'twas": 3, "'tis": 2, "gonna": 2}
# an abbreviation ending a sentence: the token keeps its period and the period is lexed again
_REPEAT_PERIOD = frozenset({"abbrev1/sentend", "abbrev1"})


class _Rule:
    __slots__ = ("name", "whole", "head", "trail", "probe")

    def __init__(self, name: str, head: str, trail: str | None):
        self.name = name
        pattern = head if trail is None else f"(?:{head})(?:{trail})"
        self.whole = regex.compile(pattern, regex.POSIX)  # leftmost-longest, as the lexer's DFA
        self.probe = regex.compile(pattern)
        self.head = regex.compile(head)
        self.trail = None if trail is None else regex.compile(trail)

    def head_length(self, text: str, start: int, end: int) -> int:
        """JFlex's split of a match with trailing context: the longest head leaving a valid trail."""
        if self.trail is None:
            return end - start
        for cut in range(end, start, -1):
            if self.head.fullmatch(text, start, cut) and self.trail.fullmatch(text, cut, end):
                return cut - start
        raise AssertionError(f"no split for rule {self.name}")  # the whole pattern matched, so unreachable


@functools.lru_cache(maxsize=1)
def _rules() -> tuple[_Rule, ...]:
    return tuple(_Rule(*rule) for rule in RULES)


@functools.lru_cache(maxsize=4096)
def _candidates(prefix: str) -> tuple[_Rule, ...]:
    """The rules that can match text starting with ``prefix`` (partial matching), in rule order."""
    return tuple(r for r in _rules() if r.probe.match(prefix, partial=True) is not None)


def _longest_match(text: str, pos: int) -> tuple[_Rule | None, int]:
    """The rule with the longest match at ``pos`` (the first one on a tie) and where its match ends.

    Matching runs on a window of the text (some patterns scan ahead for a character they need). A
    window is large enough when no candidate's language holds a string that starts with the whole
    window (partial full-match), so no match can reach past it; otherwise the window doubles.
    """
    candidates = _candidates(text[pos:pos + 2])
    size = 64
    while True:
        end = min(len(text), pos + size)
        best, best_end, too_small = None, pos, False
        for rule in candidates:
            match = rule.whole.match(text, pos, end)
            if match is not None and match.end() > best_end:
                best, best_end = rule, match.end()
            if end < len(text) and rule.probe.fullmatch(text, pos, end, partial=True) is not None:
                too_small = True
                break
        if not too_small:
            return best, best_end
        size *= 2


def _next_token(text: str, pos: int) -> tuple[object, int]:
    """(token text, None for no token, or _NEWLINE; position after what the rule consumed)."""
    best, best_end = _longest_match(text, pos)
    if best is None:  # unreachable: the last rule takes any character but \n, and 'newline' takes \n
        return None, pos + 1
    length = best.head_length(text, pos, best_end)
    name = best.name
    if name in _PUSHBACK:
        length -= _PUSHBACK[name]
    token = text[pos:pos + length]
    if name == "newline":
        return _NEWLINE, pos + length
    if name in _SKIP:
        return None, pos + length
    if name == "acronym/starter":
        if length == 2:  # "I." before "The": the letter, then the period
            return token[0], pos + 1
        return token, pos + length - 1  # "U.S." before "The": "U.S." and "." again
    if name in _REPEAT_PERIOD:
        return token, pos + length - 1
    rewrite = _REWRITE.get(name)
    return (rewrite(token) if rewrite else token), pos + length


# Shortcuts for the commonest tokens, each giving exactly what the rules give (see _shortcut).
_ASCII_WORD = regex.compile(r"[A-Za-z]+")
_SPLIT_WORDS = frozenset({"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"})


def _shortcut(text: str, pos: int) -> tuple[object, int] | None:
    """Plain words, spaces, line ends, and ',' '.' before a space, without trying every rule.

    An ASCII word followed by a space, a line end or ', ' is one token under every rule: only rules
    with a trailing context can look past it (abbreviations, acronyms and file names need a period
    there, contractions an apostrophe), and those give the same token; the words that the lexer
    splits (cannot, gonna, ...) are left to the rules. A space run is skipped by the 'space' rule
    alone; ',' and '.' followed by a space are single tokens unless a number (',5') or spaced dots
    ('. . .') start there.
    """
    ch = text[pos]
    end = len(text)
    if ch == "\n":
        return _NEWLINE, pos + 1
    if ch == " ":
        stop = pos + 1
        while stop < end and text[stop] == " ":
            stop += 1
        return None, stop
    after = text[pos + 1] if pos + 1 < end else "\n"
    if ch in ",." and after in " \n" and not (after == " " and text[pos + 2:pos + 3] == "."):
        return ch, pos + 1
    match = _ASCII_WORD.match(text, pos)
    if match is None:
        return None
    stop = match.end()
    follow = text[stop:stop + 2]
    if follow[:1] in ("", " ", "\n") or follow in (", ", ",\n") or (follow == "," and stop + 1 == end):
        word = match.group()
        if word.lower() not in _SPLIT_WORDS:
            return word, stop
    return None


_BEYOND_BMP = regex.compile("[^\u0000-\uffff]")


def _to_utf16_units(text: str) -> str:
    # The jar lexes UTF-16 code units: a character beyond the BMP is two surrogates, each untokenizable.
    data = text.encode("utf-16-le", "surrogatepass")
    return "".join(chr(int.from_bytes(data[i:i + 2], "little")) for i in range(0, len(data), 2))


def _from_utf16_units(token: str) -> str:
    return token.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def tokenize_text(text: str) -> list[str]:
    """``PTBTokenizer -preserveLines -lowerCase`` on ``text``: one output line per input line."""
    units = _BEYOND_BMP.search(text) is not None
    if units:
        text = _to_utf16_units(text)
    lines: list[list[str]] = [[]]
    pos, end = 0, len(text)
    while pos < end:
        token, pos = _shortcut(text, pos) or _next_token(text, pos)
        if token is _NEWLINE:
            lines.append([])
        elif token is not None:
            lines[-1].append((_from_utf16_units(token) if units else token).lower())
    return [" ".join(line) for line in lines]


def tokenize_lines(lines: Sequence[str]) -> list[str]:
    """The lines joined by '\\n' and tokenised as one text, as the jar reads them from one file."""
    out = tokenize_text("\n".join(lines))
    if len(out) != len(lines):
        raise ValueError(f"{len(lines)} lines in, {len(out)} out: a line contains a line break")
    return out
