"""METEOR 1.5's aligner (``edu.cmu.meteor.aligner``) in Python: four matchers and the beam search.

Each stage adds candidate matches between a test sentence (line 1) and a reference (line 2): exact
words, then equal Snowball stems, shared WordNet synsets, and paraphrase-table phrases. Words are
compared by ``String.hashCode``, as the jar compares them. A match that is the only one at its
reference position and covers words no other match covers is fixed; the rest is resolved by a beam
search (40 paths) over reference positions that prefers more matched words, then fewer chunks, then
a smaller position distance. The jar's own arithmetic is kept: the weighted match counts are Java
ints (each addition truncates), a path's distance is added to the path it branched from rather than
to the branch, and paths are ordered by a stable sort, so every tie falls as in the jar.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from operator import itemgetter

from .meteor_text import java_hash
from .snowball_english import stem

MODULES = 4  # exact, stem, synonym, paraphrase
BEAM_SIZE = 40
# The aligner's own module weights (MeteorScorer sets them: exact 1, the others 0.5); scoring uses others.
SEARCH_WEIGHTS = (1.0, 0.5, 0.5, 0.5)


# A path's order key packs the jar's comparator into one int: more weighted matches first, then
# fewer chunks, then less distance (chunk and distance counts stay far below 2**32).
_CHUNK = 1 << 32
_MATCHED = 1 << 64


class Match:
    """One candidate match; what the search adds for it is computed once, here."""

    __slots__ = ("start", "length", "match_start", "match_length", "module", "mask2", "mask1", "end2",
                 "end1", "gain", "distance")

    def __init__(self, start: int, length: int, match_start: int, match_length: int, module: int):
        self.start, self.length = start, length                  # reference (line 2) words
        self.match_start, self.match_length = match_start, match_length  # test (line 1) words
        self.module = module
        self.mask2 = ((1 << length) - 1) << start                 # the words it covers, as bits
        self.mask1 = ((1 << match_length) - 1) << match_start
        self.end2, self.end1 = start + length, match_start + match_length
        # The jar keeps the weighted counts in Java ints: (int)(n + length * weight), i.e. n plus the
        # truncated product, since n is a whole number.
        weight = SEARCH_WEIGHTS[module]
        self.gain = -(int(match_length * weight) + int(length * weight)) * _MATCHED
        self.distance = abs(start - match_start)


# The search reads a match as a tuple (one unpacking instead of seven attribute reads):
# (mask1, mask2, gain, match_start, end2, end1, distance, match)
Entry = tuple
_ENTRIES: dict[tuple[int, int, int, int, int], Entry] = {}


def _match(start: int, length: int, match_start: int, match_length: int, module: int) -> Entry:
    key = (start, length, match_start, match_length, module)
    entry = _ENTRIES.get(key)
    if entry is None:
        m = Match(*key)
        entry = _ENTRIES[key] = (m.mask1, m.mask2, m.gain, m.match_start, m.end2, m.end1, m.distance, m)
    return entry


class Sentence:
    """A normalised sentence and what the matchers need of it, computed once per sentence."""

    __slots__ = ("words", "keys", "stem_keys", "function", "by_word", "by_key", "by_stem", "synsets",
                 "by_synset", "paraphrases")

    def __init__(self, words: tuple[str, ...], resources, phrases):
        """``words``: a normalised, lower-cased sentence (so the function-word test needs no further
        lower-casing); ``phrases``: the corpus's paraphrase index (``ParaphraseIndex``)."""
        synonyms, function_words = resources.synonyms, resources.function_words
        self.words = words
        self.keys = tuple(map(java_hash, words))
        self.stem_keys = tuple(map(_stem_key, words))
        self.function = tuple(w in function_words for w in words)
        self.by_word: dict[str, list[int]] = {}      # word -> positions, ascending
        self.by_key: dict[int, list[int]] = {}       # word key -> positions
        self.by_stem: dict[int, list[int]] = {}      # stem key -> positions
        for i, (word, key, stem_key) in enumerate(zip(words, self.keys, self.stem_keys)):
            self.by_word.setdefault(word, []).append(i)
            self.by_key.setdefault(key, []).append(i)
            self.by_stem.setdefault(stem_key, []).append(i)
        self.synsets = tuple(map(synonyms.synonym_sets, words))
        self.by_synset: dict[int, int] = {}          # synset -> positions of words in it, as bits
        for i, sets in enumerate(self.synsets):
            for synset in sets:
                self.by_synset[synset] = self.by_synset.get(synset, 0) | (1 << i)
        self.paraphrases = self._paraphrases(phrases)

    def _paraphrases(self, phrases) -> list[list[tuple[int, tuple[str, ...]]]]:
        """Per start: (phrase length, paraphrase) for each table phrase there, shortest first (the
        transducer's trie walk: it stops at the first prefix that no phrase has)."""
        words, table, prefixes = self.words, phrases.table, phrases.prefixes
        n, out = len(words), []
        for start in range(n):
            found = []
            for end in range(start + 1, min(start + phrases.longest, n) + 1):
                gram = words[start:end]
                if gram not in prefixes:
                    break
                for paraphrase in table.get(gram, ()):
                    found.append((end - start, paraphrase))
            out.append(found)
        return out

    def occurrences(self, phrase: tuple[str, ...]) -> list[int]:
        """Start positions of ``phrase`` in the sentence, ascending."""
        n, words = len(phrase), self.words
        return [i for i in self.by_word.get(phrase[0], ()) if words[i:i + n] == phrase]


@functools.lru_cache(maxsize=1 << 16)
def _stem_key(word: str) -> int:
    return java_hash(stem(word))


def _bits(mask: int):
    """The set bits' positions, ascending."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


@dataclass
class Alignment:
    """What ``MeteorScorer.getMeteorStats`` reads from the jar's ``Alignment``."""

    length1: int
    length2: int
    function1: int
    function2: int
    content_matches1: list[int]
    content_matches2: list[int]
    function_matches1: list[int]
    function_matches2: list[int]
    chunks: int


# -------------------------------------------------------------------------------------------------
# Matchers: candidate matches per reference position, in the jar's order
# -------------------------------------------------------------------------------------------------
def _candidates(test: Sentence, ref: Sentence, modules: int) -> list[list[Entry]]:
    n2 = len(ref.words)
    matches: list[list[Entry]] = [[] for _ in range(n2)]
    for j, key in enumerate(ref.keys):
        for i in test.by_key.get(key, ()):
            matches[j].append(_match(j, 1, i, 1, 0))
    if modules == 1:
        return matches
    for j, key in enumerate(ref.stem_keys):
        for i in test.by_stem.get(key, ()):
            if test.keys[i] != ref.keys[j]:
                matches[j].append(_match(j, 1, i, 1, 1))
    for j, sets in enumerate(ref.synsets):
        shared = 0
        for synset in sets:
            shared |= test.by_synset.get(synset, 0)
        for i in _bits(shared):
            if test.keys[i] != ref.keys[j]:
                matches[j].append(_match(j, 1, i, 1, 2))
    for j, found in enumerate(ref.paraphrases):  # phrases of the reference paraphrased in the test
        for length, paraphrase in found:
            for i in test.occurrences(paraphrase):
                matches[j].append(_match(j, length, i, len(paraphrase), 3))
    for i, found in enumerate(test.paraphrases):  # phrases of the test paraphrased in the reference
        for length, paraphrase in found:
            for j in ref.occurrences(paraphrase):
                matches[j].append(_match(j, len(paraphrase), i, length, 3))
    return matches


def _fixed_matches(matches: list[list[Entry]]) -> dict[int, Entry]:
    """Matches alone at their reference position whose words no other match touches."""
    once1 = twice1 = once2 = twice2 = 0
    for here in matches:
        for mask1, mask2, *_ in here:
            twice1 |= once1 & mask1
            once1 |= mask1
            twice2 |= once2 & mask2
            once2 |= mask2
    return {j: here[0] for j, here in enumerate(matches)
            if len(here) == 1 and not (here[0][0] & twice1 or here[0][1] & twice2)}


# -------------------------------------------------------------------------------------------------
# Beam search (Aligner.resolve)
# -------------------------------------------------------------------------------------------------
# A path is a list [order key, used1, used2, idx, last_match_end, chosen]: used1/used2 are the
# covered words as bits, chosen a linked list (match, rest) of the matches the search picked.
_ORDER = itemgetter(0)


def _step(paths: list, current: int, here: list, fixed: dict) -> list:
    """One reference position: continue, count a fixed match, or branch on each free match and skip."""
    following = []
    append = following.append
    bit = 1 << current
    for path in paths[:BEAM_SIZE]:
        used2 = path[2]
        if used2 & bit:
            idx = path[3]
            if current < idx:
                append(path)
            elif idx in fixed:
                _, _, gain, match_start, end2, end1, distance, _ = fixed[idx]
                last = path[4]
                chunk = _CHUNK if last != -1 and match_start != last else 0
                path[0] += gain + chunk + distance
                path[3], path[4] = end2, end1
                append(path)
            continue
        _, used1, _, idx, last, chosen = path
        for entry in here:
            mask1, mask2, gain, match_start, end2, end1, distance, _ = entry
            if used2 & mask2 or used1 & mask1:
                continue
            chunk = _CHUNK if last != -1 and match_start != last else 0
            append([path[0] + gain + chunk, used1 | mask1, used2 | mask2, end2, end1, (entry, chosen)])
            path[0] += distance  # sic: the jar adds the distance to the path it branched from
        if last != -1:  # skip this position: the open chunk closes
            path[0] += _CHUNK
            path[4] = -1
        path[3] = idx + 1
        append(path)
    return following or [paths[0]]  # the jar's fallback when every path died


def _resolve(matches: list[list[Entry]], fixed: dict[int, Entry], n2: int) -> dict[int, Match]:
    used1 = used2 = 0
    for entry in fixed.values():
        used1 |= entry[0]
        used2 |= entry[1]
    paths = [[0, used1, used2, 0, -1, None]]
    for current in range(n2):
        paths.sort(key=_ORDER)  # stable, as Collections.sort
        paths = _step(paths, current, matches[current], fixed)
    paths.sort(key=_ORDER)
    final = paths[:BEAM_SIZE]
    for path in final:  # the end closes the open chunk
        if path[4] != -1:
            path[0] += _CHUNK
    final.sort(key=_ORDER)
    chosen = {j: entry[7] for j, entry in fixed.items()}
    node = final[0][5]
    while node is not None:
        chosen[node[0][7].start] = node[0][7]
        node = node[1]
    return chosen


def _chunks(chosen: dict[int, Match], n2: int) -> int:
    chunks, idx, last = 0, 0, -1
    while idx < n2:
        m = chosen.get(idx)
        if m is None:
            if last != -1:
                chunks += 1
                last = -1
            idx += 1
        else:
            if last != -1 and m.match_start != last:
                chunks += 1
            idx = m.start + m.length
            last = m.match_start + m.match_length
    return chunks + (last != -1)


def align(test: Sentence, ref: Sentence) -> Alignment:
    """``Aligner.align`` on two prepared sentences."""
    n1, n2 = len(test.words), len(ref.words)
    identical = test.keys == ref.keys  # then exact matches only, as the jar does
    matches = _candidates(test, ref, 1 if identical else MODULES)
    chosen = _resolve(matches, _fixed_matches(matches), n2)
    counts = [[0] * MODULES for _ in range(4)]  # content1, content2, function1, function2
    for m in chosen.values():
        for k in range(m.match_start, m.match_start + m.match_length):
            counts[2 if test.function[k] else 0][m.module] += 1
        for k in range(m.start, m.start + m.length):
            counts[3 if ref.function[k] else 1][m.module] += 1
    return Alignment(n1, n2, sum(test.function), sum(ref.function), *counts, chunks=_chunks(chosen, n2))
