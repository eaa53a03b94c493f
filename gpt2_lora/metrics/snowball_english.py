"""The Snowball English ("Porter2") stemmer, as METEOR 1.5's jar runs it (``org.tartarus.snowball``).

Written from the published algorithm, with the details of the jar's version: the apostrophe step,
the ``gener``/``commun``/``arsen`` region exceptions, and step 1c's "y after a non-vowel that is not
the first letter". The word is not lower-cased (vowels are the lower-case ``aeiouy``), as in the jar.
nltk's ``EnglishStemmer`` is not used: it keeps a stale R2 after step 2 and so differs on words such
as "realization" (jar and here: "realiz"; nltk: "realize").
"""

from __future__ import annotations

import functools

_VOWELS = frozenset("aeiouy")
_DOUBLES = ("bb", "dd", "ff", "gg", "mm", "nn", "pp", "rr", "tt")
_LI_ENDINGS = frozenset("cdeghkmnrt")
_EXCEPTIONS = {"skis": "ski", "skies": "sky", "dying": "die", "lying": "lie", "tying": "tie", "idly": "idl",
               "gently": "gentl", "ugly": "ugli", "early": "earli", "only": "onli", "singly": "singl",
               "sky": "sky", "news": "news", "howe": "howe", "atlas": "atlas", "cosmos": "cosmos",
               "bias": "bias", "andes": "andes"}
_INVARIANT_AFTER_1A = frozenset({"inning", "outing", "canning", "herring", "earring", "proceed", "exceed",
                                 "succeed"})
_REGION_PREFIXES = ("gener", "commun", "arsen")
_STEP2 = {"tional": "tion", "enci": "ence", "anci": "ance", "abli": "able", "entli": "ent", "izer": "ize",
          "ization": "ize", "ational": "ate", "ation": "ate", "ator": "ate", "alism": "al", "aliti": "al",
          "alli": "al", "fulness": "ful", "ousli": "ous", "ousness": "ous", "iveness": "ive", "iviti": "ive",
          "biliti": "ble", "bli": "ble", "ogi": "og", "fulli": "ful", "lessli": "less", "li": ""}
_STEP3 = {"tional": "tion", "ational": "ate", "alize": "al", "icate": "ic", "iciti": "ic", "ical": "ic",
          "ful": "", "ness": "", "ative": ""}
_STEP4 = ("al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ism", "ate",
          "iti", "ous", "ive", "ize", "ion")


def _longest_suffix(word: str, suffixes) -> str | None:
    best = None
    for suffix in suffixes:
        if word.endswith(suffix) and (best is None or len(suffix) > len(best)):
            best = suffix
    return best


def _after_vowel_consonant(word: str, start: int) -> int:
    """Index just after the first non-vowel that follows a vowel, from ``start`` (len(word) if none)."""
    i, n = start, len(word)
    while i < n and word[i] not in _VOWELS:
        i += 1
    while i < n and word[i] in _VOWELS:
        i += 1
    return i + 1 if i < n else n


def _regions(word: str) -> tuple[int, int]:
    prefix = next((p for p in _REGION_PREFIXES if word.startswith(p)), None)
    p1 = len(prefix) if prefix else _after_vowel_consonant(word, 0)
    return p1, _after_vowel_consonant(word, p1)


def _ends_short_syllable(word: str) -> bool:
    """Non-vowel (not w, x, Y) after a vowel after a non-vowel; or a vowel then a non-vowel opening the word."""
    n = len(word)
    if n >= 3 and word[-1] not in _VOWELS and word[-1] not in "wxY" and word[-2] in _VOWELS \
            and word[-3] not in _VOWELS:
        return True
    return n == 2 and word[0] in _VOWELS and word[1] not in _VOWELS


def _prelude(word: str) -> tuple[str, bool]:
    """Drop one leading apostrophe; mark y at the start or after a vowel as Y. (word, any y marked)."""
    if word.startswith("'"):
        word = word[1:]
    chars = list(word)
    marked = False
    for i, ch in enumerate(chars):
        if ch == "y" and (i == 0 or chars[i - 1] in _VOWELS):
            chars[i] = "Y"
            marked = True
    return "".join(chars), marked


def _step1a(word: str) -> str:
    suffix = _longest_suffix(word, ("'s'", "'s", "'"))
    if suffix:
        word = word[:-len(suffix)]
    suffix = _longest_suffix(word, ("sses", "ied", "ies", "s", "us", "ss"))
    if suffix == "sses":
        return word[:-2]
    if suffix in ("ied", "ies"):
        return word[:-3] + ("i" if len(word) - 3 >= 2 else "ie")
    if suffix == "s" and any(ch in _VOWELS for ch in word[:-2]):
        return word[:-1]
    return word


def _step1b(word: str, p1: int) -> str:
    suffix = _longest_suffix(word, ("eed", "eedly", "ed", "edly", "ing", "ingly"))
    if suffix is None:
        return word
    start = len(word) - len(suffix)
    if suffix in ("eed", "eedly"):
        return word[:start] + "ee" if start >= p1 else word
    if not any(ch in _VOWELS for ch in word[:start]):
        return word
    word = word[:start]
    if word.endswith(("at", "bl", "iz")):
        return word + "e"
    if word.endswith(_DOUBLES):
        return word[:-1]
    if len(word) == p1 and _ends_short_syllable(word):
        return word + "e"
    return word


def _step1c(word: str) -> str:
    if len(word) >= 3 and word[-1] in "yY" and word[-2] not in _VOWELS:
        return word[:-1] + "i"
    return word


def _step2(word: str, p1: int) -> str:
    suffix = _longest_suffix(word, _STEP2)
    if suffix is None or len(word) - len(suffix) < p1:
        return word
    stem = word[:-len(suffix)]
    if suffix == "ogi" and not stem.endswith("l"):
        return word
    if suffix == "li" and (not stem or stem[-1] not in _LI_ENDINGS):
        return word
    return stem + _STEP2[suffix]


def _step3(word: str, p1: int, p2: int) -> str:
    suffix = _longest_suffix(word, _STEP3)
    if suffix is None:
        return word
    start = len(word) - len(suffix)
    if start < p1 or (suffix == "ative" and start < p2):
        return word
    return word[:start] + _STEP3[suffix]


def _step4(word: str, p2: int) -> str:
    suffix = _longest_suffix(word, _STEP4)
    if suffix is None:
        return word
    start = len(word) - len(suffix)
    if start < p2 or (suffix == "ion" and (start == 0 or word[start - 1] not in "st")):
        return word
    return word[:start]


def _step5(word: str, p1: int, p2: int) -> str:
    start = len(word) - 1
    if word.endswith("e") and (start >= p2 or (start >= p1 and not _ends_short_syllable(word[:start]))):
        return word[:start]
    if word.endswith("l") and start >= p2 and word[:start].endswith("l"):
        return word[:start]
    return word


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """The Snowball English stem of ``word`` (as the jar's ``englishStemmer``)."""
    if word in _EXCEPTIONS:
        return _EXCEPTIONS[word]
    if len(word) < 3:
        return word
    word, marked = _prelude(word)
    p1, p2 = _regions(word)
    word = _step1a(word)
    if word not in _INVARIANT_AFTER_1A:
        word = _step1b(word, p1)
        word = _step1c(word)
        word = _step2(word, p1)
        word = _step3(word, p1, p2)
        word = _step4(word, p2)
        word = _step5(word, p1, p2)
    # the postlude lowers every Y, the word's own included, but only when the prelude marked one
    return word.replace("Y", "y") if marked else word
