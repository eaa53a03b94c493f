"""E2E / WebNLG 2017 / DART readers and the two on-disk layers the LoRA pipeline uses.

* source   — the raw data files (E2E ``MR||reference`` lines, WebNLG ``b2json`` JSON, DART JSON);
* formatted — one ``{"context": str, "completion": str[, "cate": bool]}`` per line, byte-identical to
  microsoft/LoRA ``src/format_converting_{e2e,webnlg,dart}.py``;
* encoded  — one ``{"context": ids, "completion": ids}`` per line, identical to
  ``src/gpt2_encode.py --add_bos --add_eos``: context ids + [50256], ids(" " + completion) + [50256].

Both JSON layers are written with ``json.dumps`` defaults (ASCII escapes, ``", "``/``": "`` separators),
exactly as upstream does. A built-in synthetic E2E-style data set lives at the bottom.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Iterable, NamedTuple

from tqdm import tqdm

from .errors import UserError
from .fileio import read_lines, read_text, require_file

EOS_ID = 50256  # GPT-2 <|endoftext|>, used by upstream as both "bos" (after the context) and eos

SPLITS = ("train", "valid", "test")
# where each task's splits live (upstream names: WebNLG/DART call the validation split "dev")
SOURCE_FILES = {
    "e2e": {"train": "train.txt", "valid": "valid.txt", "test": "test.txt"},
    "webnlg": {"train": "train.json", "valid": "dev.json", "test": "test.json"},
    "dart": {split: f"dart-v1.1.1-full-{name}.json"
             for split, name in (("train", "train"), ("valid", "dev"), ("test", "test"))},
}
# folder of each task inside a data root laid out like upstream's data/ (and scripts/download_data.sh)
SOURCE_SUBDIRS = {"e2e": "e2e", "webnlg": "webnlg_challenge_2017", "dart": "dart"}

# WebNLG 2017 categories present in training; test entries from the other five are "unseen"
WEBNLG_SEEN = ("Airport", "Astronaut", "Building", "City", "ComicsCharacter", "Food", "Monument",
               "SportsTeam", "University", "WrittenWork")


class Example(NamedTuple):
    context: str
    completion: str
    cate: bool | None = None  # WebNLG only: category seen in training


# ---------------------------------------------------------------------------------------------- reading
def _read_text(path: str | os.PathLike) -> tuple[Path, str]:
    path = Path(path)
    text = read_text(path, "source file")
    if not text.strip():
        raise UserError(f"{path}: empty file")
    return path, text


def _load_json(path: str | os.PathLike):
    path, text = _read_text(path)
    try:
        return path, json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}:{err.colno}: bad JSON ({err.msg})") from None


def _get(obj, key, where: str, kind: type | tuple = str):
    """obj[key], checked: a missing key or a value of the wrong type is a one-line UserError."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    if key not in obj:
        raise UserError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UserError(f"{where}.{key}: expected {expected}, found {type(value).__name__}")
    return value


def _no_examples(path: Path) -> UserError:
    return UserError(f"{path}: no examples found")


def read_e2e(path: str | os.PathLike) -> list[Example]:
    """E2E ``MR||reference`` lines. As upstream, the whole line is stripped first, so the reference
    loses its trailing space (and the MR any leading space)."""
    path, text = _read_text(path)
    # Python's text mode (which upstream reads with) treats \r\n and \r as line ends too
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    examples = []
    for line_no, line in enumerate(lines, 1):
        parts = line.strip().split("||")
        if len(parts) != 2:
            what = "empty line" if not line.strip() else (
                "no '||' between MR and reference" if len(parts) == 1 else "more than one '||'")
            raise UserError(f"{path}:{line_no}: {what} (expected MR||reference)")
        examples.append(Example(parts[0], parts[1]))
    if not examples:
        raise _no_examples(path)
    return examples


def _triples_context(triples: Iterable[tuple[object, object, object]]) -> str:
    # str.format of each field, as upstream, so a non-string field renders exactly like there
    return " | ".join(f"{s} : {p} : {o}" for s, p, o in triples)


def read_webnlg(path: str | os.PathLike) -> list[Example]:
    """WebNLG 2017 challenge JSON: one example per ``good`` lexicalisation, ``cate`` = seen category."""
    path, data = _load_json(path)
    entries = _get(data, "entries", f"{path}: top level", list)
    examples = []
    for i, item in enumerate(entries):
        where = f"{path}: entries[{i}]"
        entry = _get(item, str(i + 1), where, dict)  # upstream indexes entries[i][str(i+1)]
        where += f"[{str(i + 1)!r}]"
        triples = []
        for j, triple in enumerate(_get(entry, "modifiedtripleset", where, list)):
            at = f"{where}.modifiedtripleset[{j}]"
            triples.append(tuple(_get(triple, key, at, object) for key in ("subject", "property", "object")))
        context = _triples_context(triples)
        cate = _get(entry, "category", where, object) in WEBNLG_SEEN
        for j, lex in enumerate(_get(entry, "lexicalisations", where, list)):
            at = f"{where}.lexicalisations[{j}]"
            if _get(lex, "comment", at, object) == "good":
                examples.append(Example(context, _get(lex, "lex", at, str), cate))
    if not examples:
        raise _no_examples(path)
    return examples


def read_dart(path: str | os.PathLike) -> list[Example]:
    """DART v1.1.1 JSON: relations lower-cased, one example per annotation (entries without any give none)."""
    path, data = _load_json(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: top level: expected a JSON list of entries, found {type(data).__name__}")
    examples = []
    for i, entry in enumerate(data):
        where = f"{path}: [{i}]"
        triples = []
        for j, triple in enumerate(_get(entry, "tripleset", where, list)):
            if not (isinstance(triple, list) and len(triple) == 3 and isinstance(triple[1], str)):
                raise UserError(f"{where}.tripleset[{j}]: expected [subject, relation, object], found "
                                f"{json.dumps(triple)[:80]}")
            subj, rel, obj = triple
            triples.append((subj, rel.lower(), obj))
        context = _triples_context(triples)
        for j, ann in enumerate(_get(entry, "annotations", where, list)):
            examples.append(Example(context, _get(ann, "text", f"{where}.annotations[{j}]", str)))
    if not examples:
        raise _no_examples(path)
    return examples


READERS = {"e2e": read_e2e, "webnlg": read_webnlg, "dart": read_dart}


def find_source_dir(task: str, src: str | os.PathLike) -> Path:
    """``src`` itself if it holds the task's files, else ``src/<upstream folder>`` (a whole data root)."""
    src = Path(src)
    first = SOURCE_FILES[task]["train"]
    if not (src / first).is_file() and (src / SOURCE_SUBDIRS[task] / first).is_file():
        return src / SOURCE_SUBDIRS[task]
    return src


def source_paths(task: str, src: str | os.PathLike) -> dict[str, Path]:
    """The three split files of ``task`` under ``src``; any missing split is one clear error."""
    if task not in READERS:
        raise UserError(f"--task {task}: expected one of {', '.join(READERS)}")
    if not Path(src).is_dir():
        raise UserError(f"--src {src}: no such directory")
    src_dir = find_source_dir(task, src)
    paths = {split: src_dir / name for split, name in SOURCE_FILES[task].items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise UserError(f"--src {src}: missing {task} split file(s) {', '.join(missing)} "
                        f"(expected {', '.join(SOURCE_FILES[task].values())})")
    return paths


# ------------------------------------------------------------------------------------------------ layers
def formatted_line(example: Example) -> str:
    """One line of the formatted layer, as upstream's ``json.dumps(x) + '\\n'`` (key order matters)."""
    record = {"context": example.context, "completion": example.completion}
    if example.cate is not None:
        record["cate"] = example.cate
    return json.dumps(record) + "\n"


def encoded_line(context_ids: list[int], completion_ids: list[int]) -> str:
    return json.dumps({"context": context_ids, "completion": completion_ids}) + "\n"


def encode_examples(examples: list[Example], tokenizer, chunk: int = 8192, desc: str | None = None,
                    num_threads: int = 2) -> list[tuple[list[int], list[int]]]:
    """(context ids + [eos], ids(' ' + completion) + [eos]) per example, as gpt2_encode --add_bos --add_eos.

    Each distinct string is encoded once (E2E and WebNLG repeat every context several times).
    """
    texts = list(dict.fromkeys(t for ex in examples for t in (ex.context, " " + ex.completion)))
    ids: dict[str, list[int]] = {}
    with tqdm(total=len(texts), desc=desc, unit="str", disable=None, leave=False) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start:start + chunk]
            ids.update(zip(part, tokenizer.encode_batch(part, num_threads=num_threads)))
            bar.update(len(part))
    return [(ids[ex.context] + [EOS_ID], ids[" " + ex.completion] + [EOS_ID]) for ex in examples]


def read_formatted(path: str | os.PathLike, what: str = "formatted file") -> list[Example]:
    """Read a formatted-layer file back (e.g. the test references for decoding). Record i is line i + 1:
    beam output names its lines by that index, so a blank line is an error rather than skipped."""
    lines = read_lines(path, what)
    if not lines:
        raise UserError(f"{path}: empty file")
    examples = []
    for line_no, line in enumerate(lines, 1):
        where = f"{path}:{line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: bad JSON ({err.msg})") from None
        cate = _get(record, "cate", where, bool) if isinstance(record, dict) and "cate" in record else None
        examples.append(Example(_get(record, "context", where), _get(record, "completion", where), cate))
    return examples


# --------------------------------------------------------------------------------------------- synthetic
# A small, regular E2E look-alike: same MR syntax and attribute order, tokenised references ending in a
# space. Values are copied into the text nearly verbatim, so even a tiny model can learn it quickly.
SYNTHETIC_SIZES = {"train": 2000, "valid": 200, "test": 100}  # contexts per split (1-3 references each)
SYNTHETIC_MAX_CONTEXTS = 100_000
_NAMES = ("The Golden Lion", "Blue Harbour", "The Old Mill", "Green Garden", "The Red Door", "Silver Spoon",
          "The Olive Tree", "Moonlight", "The Copper Kettle", "Riverbank", "The White Horse", "Sunflower",
          "The Lantern", "Maple House", "The Crown", "Orchid", "The Anchor", "Café Luna")
_VALUES = {
    "Type": ("coffee shop", "pub", "restaurant"),
    "food": ("Chinese", "English", "French", "Indian", "Italian", "Japanese", "Fast food"),
    "price": ("cheap", "moderate", "high", "less than £ 20", "£ 20 - 25", "more than £ 30"),
    "customer rating": ("low", "average", "high", "1 out of 5", "3 out of 5", "5 out of 5"),
    "area": ("city centre", "riverside"),
    "family friendly": ("yes", "no"),
    "near": ("Central Station", "The Museum", "Market Square", "City Hall", "The Cinema", "Park Hotel",
             "The Library", "Burger Palace"),
}
ATTRIBUTES = ("name", *_VALUES)  # E2E's order: name, Type, food, price, customer rating, area, ...


def _synthetic_mr(rng: random.Random) -> dict[str, str]:
    optional = [key for key in _VALUES if rng.random() < 0.6]
    while len(optional) < 2:  # E2E MRs have at least 3 attributes
        key = rng.choice(list(_VALUES))
        if key not in optional:
            optional.append(key)
    mr = {"name": rng.choice(_NAMES)}
    mr.update((key, rng.choice(_VALUES[key])) for key in _VALUES if key in optional)
    return mr


def _food(value: str) -> str:
    return "fast food" if value == "Fast food" else f"{value} food"


def synthetic_reference(mr: dict[str, str], style: int) -> str:
    """One of three fixed sentence plans; every attribute of ``mr`` is mentioned, nothing else."""
    get = mr.get
    family = {"yes": "family - friendly", "no": "not family - friendly"}.get(get("family friendly"))
    place = get("Type", "place")
    where = (f" in the {get('area')}" if "area" in mr else "") + (f" near {get('near')}" if "near" in mr else "")
    if style == 0:
        out = [f"{mr['name']} is a {place}" + (f" serving {_food(get('food'))}" if "food" in mr else "") + where]
        if "price" in mr:
            out.append(f"Its price range is {get('price')}")
        if "customer rating" in mr:
            out.append(f"Its customer rating is {get('customer rating')}")
        if family:
            out.append(f"It is {family}")
    elif style == 1:
        out = [f"There is a {place} called {mr['name']}" + where]
        if "food" in mr:
            out.append(f"It serves {_food(get('food'))}")
        if "price" in mr:
            out.append(f"The price range is {get('price')}")
        if "customer rating" in mr:
            out.append(f"Customers rate it {get('customer rating')}")
        if family:
            out.append(f"It is {family}")
    else:
        out = [f"{mr['name']}{where} is a {place}" + (f" with {_food(get('food'))}" if "food" in mr else "")]
        if family:
            out.append(f"This {place} is {family}")
        if "price" in mr or "customer rating" in mr:
            parts = ([f"prices are {get('price')}"] if "price" in mr else []) + (
                [f"the rating is {get('customer rating')}"] if "customer rating" in mr else [])
            sentence = " and ".join(parts)
            out.append(sentence[0].upper() + sentence[1:])
    return " . ".join(out) + " . "  # tokenised like E2E: spaced full stops and a trailing space


def synthetic_mr_string(mr: dict[str, str]) -> str:
    return " | ".join(f"{key} : {mr[key]}" for key in ATTRIBUTES if key in mr)


def synthetic_source(sizes: dict[str, int] | None = None, seed: int = 0,
                     max_refs: int = 3) -> dict[str, list[str]]:
    """Deterministic ``MR||reference `` lines per split; no MR appears in two splits (or twice)."""
    sizes = {**SYNTHETIC_SIZES, **(sizes or {})}
    if sum(sizes.values()) > SYNTHETIC_MAX_CONTEXTS:
        raise UserError(f"synthetic sizes {sum(sizes.values()):,} contexts in all: at most "
                        f"{SYNTHETIC_MAX_CONTEXTS:,} (distinct MRs get rare long before the ~10^6 that exist)")
    seen: set[str] = set()
    out = {}
    for index, split in enumerate(SPLITS):
        rng = random.Random(seed * 1000 + index)
        if sizes[split] < 1:
            raise UserError(f"synthetic {split} size must be at least 1, got {sizes[split]}")
        lines, contexts, tries = [], 0, 0
        while contexts < sizes[split]:
            tries += 1
            if tries > 50 * sizes[split] + 1000:  # the MR space is finite (~10^6); never loop forever
                raise UserError(f"synthetic {split} size {sizes[split]}: too many distinct MRs requested")
            mr = _synthetic_mr(rng)
            mr_string = synthetic_mr_string(mr)
            if mr_string in seen:
                continue
            seen.add(mr_string)
            contexts += 1
            styles = rng.sample(range(3), rng.randint(1, max(1, min(3, max_refs))))
            lines.extend(f"{mr_string}||{synthetic_reference(mr, style)}" for style in styles)
        out[split] = lines
    return out


# ------------------------------------------------------------------------------ the encoded layer
def read_encoded(path: str | os.PathLike, what: str = "data file",
                 vocab_size: int | None = None) -> list[tuple[list[int], list[int]]]:
    """(context ids, completion ids) per line of an encoded jsonl file; bad lines name file:line, and
    so do ids outside [0, vocab_size) (outside int32 when no vocab_size is given)."""
    limit = vocab_size if vocab_size is not None else 2 ** 31
    path = require_file(path, what)
    examples = []
    blank = None  # the first blank line after the last record: harmless at the end (editors add them)
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            if not raw.strip():
                blank = blank or line_no
                continue
            if blank is not None:  # a gap would shift the line numbers that beam's ids and decode follow
                raise UserError(f"{path}:{blank}: empty line (one JSON object a line)")
            where = f"{path}:{line_no}"
            try:
                record = json.loads(raw)
            except UnicodeDecodeError:
                raise UserError(f"{where}: not valid UTF-8") from None
            except json.JSONDecodeError as err:
                raise UserError(f"{where}: bad JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise UserError(f"{where}: expected a JSON object with 'context' and 'completion'")
            pair = []
            for key in ("context", "completion"):
                ids = record.get(key)
                if not isinstance(ids, list) or not all(type(t) is int for t in ids):
                    raise UserError(f"{where}: '{key}' must be a list of token ids (is this the encoded "
                                    f"file, not the *_formatted.jsonl one?)")
                outside = next((t for t in ids if not 0 <= t < limit), None)
                if outside is not None:
                    vocab = f"the vocabulary of {vocab_size}" if vocab_size is not None else "int32"
                    raise UserError(f"{where}: token id {outside} in '{key}' is outside {vocab}")
                pair.append(ids)
            examples.append((pair[0], pair[1]))
    if not examples:
        raise UserError(f"{path}: no examples (empty file)")
    return examples
