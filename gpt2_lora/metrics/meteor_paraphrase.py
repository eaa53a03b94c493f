"""METEOR 1.5's English paraphrase table (``paraphrase-en.gz`` from the pycocoevalcap wheel), for Python.

The table has 5.27 million entries (probability, phrase, paraphrase: three lines each). Reading it
takes the jar several seconds per run, and longer in Python, so the first use writes a compact copy
to a cache folder: every distinct word once, and each phrase as a run of 16-bit word ids. A later run
loads it in a fraction of a second and keeps only the entries that can match in the corpus at hand:
those whose words all occur in the corpus (an entry with any other word can never match, because both
of its phrases must appear in the sentences being aligned). Entry order is the file's, which the
aligner's search depends on.

Cache folder: ``$GPT2_LORA_CACHE``, else ``$XDG_CACHE_HOME/gpt2-lora``, else ``~/.cache/gpt2-lora``.
The cache file is named after the table's SHA-256, so another table never reuses it; it is derived
from the wheel on the user's machine and is never shipped.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import UserError
from ..fileio import file_sha256

CACHE_FORMAT = 1
_CHUNK_BYTES = 1 << 24  # decompress and convert the table 16 MiB at a time (bounded memory)


def cache_dir() -> Path:
    if os.environ.get("GPT2_LORA_CACHE"):
        return Path(os.environ["GPT2_LORA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpt2-lora"


class ParaphraseTable:
    """The table as word ids: ``phrase``/``paraphrase`` hold each entry's ids, ``*_length`` their counts."""

    def __init__(self, words: list[str], phrase_ids, phrase_length, paraphrase_ids, paraphrase_length):
        self.words = words
        self.phrase_ids, self.phrase_length = phrase_ids, phrase_length
        self.paraphrase_ids, self.paraphrase_length = paraphrase_ids, paraphrase_length

    @classmethod
    def load(cls, source: Path, sha256: str) -> "ParaphraseTable":
        """The table in ``source`` (whose SHA-256 must be ``sha256``), from the cache when it is there.

        The cache records the source's size and modification time; while they match, the source is
        not hashed again. A missing, stale or unreadable cache is rebuilt; one that cannot be written
        (read-only folder) only costs the conversion again next time."""
        path = cache_dir() / f"meteor-paraphrase-{sha256[:16]}-v{CACHE_FORMAT}.npz"
        stat = source.stat()
        stamp = np.array([stat.st_size, stat.st_mtime_ns], dtype=np.int64)
        arrays = _read_cache(path, stamp)
        if arrays is None:
            actual = file_sha256(source)
            if actual != sha256:
                raise UserError(f"{source}: sha256 {actual[:12]}… is not the pycocoevalcap==1.2 paraphrase "
                                f"table ({sha256[:12]}…); reinstall pycocoevalcap==1.2")
            arrays = _convert(source, stamp)
            _write_cache(path, arrays)
        words = arrays["words"].tobytes().decode("utf-8").split("\n")
        return cls(words, arrays["phrase_ids"], arrays["phrase_length"], arrays["paraphrase_ids"],
                   arrays["paraphrase_length"])

    def for_corpus(self, sentences: Iterable[tuple[str, ...]]) -> "ParaphraseIndex":
        """The entries that can match in ``sentences`` (word tuples), in file order.

        An entry can only match when its phrase and its paraphrase both occur in sentences of the
        corpus, so entries with a word outside the corpus go first, then those whose phrase or
        paraphrase is not one of the corpus's n-grams (compared as 64-bit hashes: a collision can only
        keep an entry that cannot match, never drop one that can)."""
        sentences = list(sentences)
        index = {w: i for i, w in enumerate(self.words)}
        known = np.zeros(len(self.words), dtype=bool)
        known[sorted({index[w] for s in sentences for w in s if w in index})] = True
        sides = [(self.phrase_ids, self.phrase_length, _starts(self.phrase_length)),
                 (self.paraphrase_ids, self.paraphrase_length, _starts(self.paraphrase_length))]
        keep = np.ones(len(self.phrase_length), dtype=bool)
        for ids, lengths, starts in sides:
            keep &= np.logical_and.reduceat(known[ids], starts)
        ngrams = _corpus_ngrams(sentences, index, int(max(self.phrase_length.max(), self.paraphrase_length.max())))
        for ids, lengths, starts in sides:
            for length, hashes in ngrams.items():
                rows = np.flatnonzero(keep & (lengths == length))
                found = np.isin(_hash(ids[starts[rows, None] + np.arange(length)]), hashes)
                keep[rows[~found]] = False
        words = np.array(self.words, dtype=object)
        (ids1, lengths1, starts1), (ids2, lengths2, starts2) = sides
        table: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for phrase, paraphrase in zip(_decode(words, ids1, starts1[keep], lengths1[keep]),
                                      _decode(words, ids2, starts2[keep], lengths2[keep])):
            table.setdefault(phrase, []).append(paraphrase)
        return ParaphraseIndex(table)


_HASH_BASE = 0x9E3779B97F4A7C15
_HASH_POWERS = np.array([pow(_HASH_BASE, k + 1, 1 << 64) for k in range(64)], dtype=np.uint64)


def _hash(grid: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of word ids (wrapping arithmetic)."""
    grid = grid.astype(np.uint64) + np.uint64(1)
    return (grid * _HASH_POWERS[:grid.shape[1]]).sum(axis=1, dtype=np.uint64)


def _corpus_ngrams(sentences: list[tuple[str, ...]], index: dict[str, int], longest: int) -> dict:
    """length -> sorted hashes of the corpus's n-grams of that length (2 .. longest) over table words."""
    flat = np.array([index.get(w, -1) for s in sentences for w in (*s, None)], dtype=np.int64)  # None: a break
    out = {}
    for length in range(2, longest + 1):
        if len(flat) < length:
            break
        windows = np.lib.stride_tricks.sliding_window_view(flat, length)
        out[length] = np.unique(_hash(windows[(windows >= 0).all(axis=1)]))
    return out


class ParaphraseIndex:
    """Phrase -> paraphrases (file order), looked up as the jar's transducer walks its trie."""

    def __init__(self, table: dict[tuple[str, ...], list[tuple[str, ...]]]):
        self.table = table
        self.prefixes = {phrase[:n] for phrase in table for n in range(1, len(phrase) + 1)}
        self.longest = max(map(len, table), default=0)

    def paths(self, words: tuple[str, ...], start: int) -> list[tuple[int, tuple[str, ...]]]:
        """(phrase length, paraphrase) for every phrase starting at ``start``, shortest phrases first."""
        found = []
        for length in range(1, min(self.longest, len(words) - start) + 1):
            gram = words[start:start + length]
            if gram not in self.prefixes:
                break
            for paraphrase in self.table.get(gram, ()):
                found.append((length, paraphrase))
        return found


def _starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


def _decode(words: np.ndarray, ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[tuple]:
    """The selected phrases as word tuples (one gather per phrase length)."""
    out: list = [None] * len(starts)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        grid = ids[starts[rows, None] + np.arange(length)]
        for row, phrase in zip(rows.tolist(), map(tuple, words[grid].tolist())):
            out[row] = phrase
    return out


# -------------------------------------------------------------------------------------------------
# Building the cache
# -------------------------------------------------------------------------------------------------
def _java_lines(stream) -> Iterable[list[bytes]]:
    """The file's lines, a chunk at a time.

    The pinned table has single-space separated words, no '\\r', tabs or form feeds, and no empty
    line, so splitting on '\\n' and ' ' gives what BufferedReader and StringTokenizer give; a chunk
    breaking that assumption is refused rather than read differently."""
    tail = b""
    while True:
        block = stream.read(_CHUNK_BYTES)
        if not block:
            break
        joined = tail + block
        if any(bad in joined for bad in (b"\r", b"\t", b"\x0c", b"  ", b"\n ", b" \n", b"\n\n")):
            raise UserError("METEOR paraphrase table: unexpected white space (not the pycocoevalcap 1.2 file)")
        lines = joined.split(b"\n")
        tail = lines.pop()
        yield lines
    if tail:
        yield [tail]


def _read_cache(path: Path, stamp: np.ndarray) -> dict | None:
    try:
        with np.load(path) as data:
            if not np.array_equal(data["source_stamp"], stamp):
                return None
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _write_cache(path: Path, arrays: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def _convert(source: Path, stamp: np.ndarray) -> dict:
    """The gzipped table as the cache's arrays."""
    vocab: dict[bytes, int] = {}
    parts = {"phrase": ([], []), "paraphrase": ([], [])}
    pending: list[bytes] = []
    with gzip.open(source, "rb") as stream:
        for lines in _java_lines(stream):
            pending.extend(lines)
            usable = len(pending) - len(pending) % 3
            _add_entries(pending[:usable], vocab, parts)
            del pending[:usable]
    if pending:
        raise UserError(f"{source}: truncated METEOR paraphrase table ({len(pending)} stray lines)")
    if len(vocab) > 1 << 16:
        raise UserError(f"{source}: {len(vocab)} distinct words do not fit the 16-bit cache format")
    arrays = {"words": np.frombuffer(b"\n".join(vocab), dtype=np.uint8), "source_stamp": stamp}
    for name, (ids, lengths) in parts.items():
        arrays[f"{name}_ids"] = np.concatenate(ids)
        arrays[f"{name}_length"] = np.concatenate(lengths)
    return arrays


def _add_entries(lines: list[bytes], vocab: dict[bytes, int], parts) -> None:
    # An entry is (probability, phrase, paraphrase); phrases are single-space separated words.
    for name, phrases in (("phrase", lines[1::3]), ("paraphrase", lines[2::3])):
        words = b" ".join(phrases).split(b" ")
        for word in dict.fromkeys(words):
            if word not in vocab:
                vocab[word] = len(vocab)
        ids, lengths = parts[name]
        ids.append(np.fromiter(map(vocab.__getitem__, words), dtype=np.uint16, count=len(words)))
        lengths.append(np.fromiter((p.count(b" ") + 1 for p in phrases), dtype=np.uint8, count=len(phrases)))
