"""Your own data-to-text set (``prepare --task custom``): JSONL / CSV / TSV rows -> ``data.Example``.

``--src`` is one file, split here by distinct context (seeded), or a folder holding ``train.*``,
``valid.*`` (or ``dev.*``) and ``test.*``; a folder without a valid file gets one carved from train, by
context, in the ratio train : valid of ``--split``. Formats go by extension: ``.jsonl`` (one JSON object
a line), ``.csv`` and ``.tsv`` (a header row, then fields as Python's csv module reads them). Texts are
used verbatim. Rows that share a context are references of one instance, as in E2E: they always land in
the same split, and decoding groups them by that context.

Every problem is one UserError naming file:line, raised before anything is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from .data import SPLITS, Example
from .errors import UserError
from .fileio import read_text

FORMATS = {".jsonl": None, ".csv": ",", ".tsv": "\t"}  # extension -> CSV delimiter (None: JSON lines)
DEFAULT_SPLIT = (0.9, 0.05, 0.05)
SPLIT_STEMS = {"train": ("train",), "valid": ("valid", "dev"), "test": ("test",)}
EOT = "<|endoftext|>"


@dataclass(frozen=True)
class CustomOptions:
    context_field: str = "context"
    completion_field: str = "completion"
    split: tuple[float, float, float] | None = None  # None: DEFAULT_SPLIT where a split is drawn
    random_seed: int = 0


@dataclass(frozen=True)
class CustomSet:
    splits: dict[str, list[Example]]  # train, valid, test
    sources: dict[str, Path]          # the files read ("source" for one file, else by split)
    origin: dict[str, str]            # split -> where its rows came from (for the log)
    stamp_options: dict               # what prepare's stamp records besides the sources


# ------------------------------------------------------------------------------------------------ flags
def parse_split(text: str) -> tuple[float, float, float]:
    """``--split TRAIN,VALID,TEST``: three fractions, none negative, summing to 1."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise UserError(f"--split {text}: expected three fractions TRAIN,VALID,TEST (e.g. 0.9,0.05,0.05)")
    if min(values) < 0:
        raise UserError(f"--split {text}: fractions must not be negative")
    if abs(sum(values) - 1) > 1e-6:
        raise UserError(f"--split {text}: fractions must sum to 1 (they sum to {sum(values):g})")
    return values


# ---------------------------------------------------------------------------------------------- reading
def _text(value, field: str, role: str, where: str) -> str:
    if not isinstance(value, str):
        found = "null" if value is None else type(value).__name__  # named as the JSON has it
        raise UserError(f"{where}: field {field!r} ({role}) must be a string, found {found}")
    if not value.strip():
        raise UserError(f"{where}: empty {role} (field {field!r})")
    if role == "completion":
        # the E2E reference and hypothesis files hold one text a line, and decoding cuts at EOT
        if value.splitlines() != [value]:
            raise UserError(f"{where}: the completion (field {field!r}) holds a line break; the reference and "
                            "hypothesis files are one text a line, so join its lines first (e.g. with spaces)")
        if EOT in value:
            raise UserError(f"{where}: the completion (field {field!r}) holds {EOT!r}, where decoding cuts texts")
    return value


def _fields_list(names) -> str:
    return ", ".join(repr(n) for n in names) if names else "none"


def _source_text(path: Path) -> str:
    text = read_text(path, "source file")
    return text[1:] if text.startswith("\ufeff") else text  # a byte-order mark (spreadsheet exports)


def _read_jsonl(path: Path, options: CustomOptions) -> list[Example]:
    examples = []
    for line_no, line in enumerate(_source_text(path).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: bad JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object, found {type(record).__name__}")
        for field in (options.context_field, options.completion_field):
            if field not in record:
                raise UserError(f"{where}: no field {field!r} (the row has: {_fields_list(record)})")
        examples.append(Example(_text(record[options.context_field], options.context_field, "context", where),
                                _text(record[options.completion_field], options.completion_field,
                                      "completion", where)))
    return examples


def _columns(header: list[str], path: Path, line_no: int, options: CustomOptions) -> tuple[int, int]:
    columns = []
    for field in (options.context_field, options.completion_field):
        if header.count(field) != 1:
            what = "no column" if field not in header else "two columns"
            raise UserError(f"{path}:{line_no}: {what} {field!r} in the header (it has: {_fields_list(header)})")
        columns.append(header.index(field))
    return columns[0], columns[1]


def _read_table(path: Path, options: CustomOptions, delimiter: str) -> list[Example]:
    reader = csv.reader(io.StringIO(_source_text(path), newline=""), delimiter=delimiter, strict=True)
    header, header_line, examples = None, 0, []
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: name the row by its first line
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise UserError(f"{path}:{start}: bad {path.suffix[1:].upper()} row ({err})") from None
        if not row:
            continue  # a blank line
        if header is None:
            header, header_line = row, start
            context_col, completion_col = _columns(header, path, start, options)
            continue
        where = f"{path}:{start}"
        if len(row) != len(header):
            raise UserError(f"{where}: {len(row)} fields, but the header (line {header_line}) has {len(header)}")
        examples.append(Example(_text(row[context_col], options.context_field, "context", where),
                                _text(row[completion_col], options.completion_field, "completion", where)))
    return examples


def read_rows(path: str | os.PathLike, options: CustomOptions = CustomOptions()) -> list[Example]:
    """The (context, completion) rows of one source file, in file order; at least one."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"{path}: unsupported format {path.suffix or '(no extension)'!r} "
                        f"(expected {', '.join(FORMATS)})")
    delimiter = FORMATS[path.suffix.lower()]
    examples = _read_jsonl(path, options) if delimiter is None else _read_table(path, options, delimiter)
    if not examples:
        raise UserError(f"{path}: no rows (its split would be empty)")
    return examples


def find_split_files(folder: Path) -> dict[str, Path]:
    """train / valid (or dev) / test files of a --src folder: one of each at most; train and test needed."""
    found: dict[str, Path] = {}
    for split, stems in SPLIT_STEMS.items():
        matches = sorted(p for p in folder.iterdir() if p.stem.lower() in stems and p.suffix.lower() in FORMATS
                         and p.is_file())
        if len(matches) > 1:
            raise UserError(f"--src {folder}: {' and '.join(p.name for p in matches)} are both {split} files; "
                            "keep one")
        if matches:
            found[split] = matches[0]
    for split in ("train", "test"):
        if split not in found:
            expected = ", ".join(f"{split}{ext}" for ext in FORMATS)
            raise UserError(f"--src {folder}: no {split} file (expected one of {expected}; a folder needs train "
                            "and test, valid/dev is optional; or pass a single file to split)")
    return found


# -------------------------------------------------------------------------------------------- splitting
def split_by_context(examples: list[Example], shares: dict[str, float], seed: int,
                     what: str) -> dict[str, list[Example]]:
    """Assign each distinct context to one split, seeded; rows keep their file order within a split.

    The first split gets what the others' rounded shares leave. Contexts are sorted before the shuffle,
    so the assignment depends on the set of contexts and the seed, not on the row order.
    """
    contexts = sorted({ex.context for ex in examples})
    random.Random(seed).shuffle(contexts)
    names = list(shares)
    counts = {name: round(len(contexts) * shares[name]) for name in names[1:]}
    counts = {names[0]: len(contexts) - sum(counts.values()), **counts}
    for name in names:
        if counts[name] < 1:
            raise UserError(f"{what}: the {name} split would be empty ({counts[name]} of the {len(contexts)} "
                            "distinct contexts); give it a larger fraction or more data")
    assigned, start = {}, 0
    for name in names:
        assigned.update(dict.fromkeys(contexts[start:start + counts[name]], name))
        start += counts[name]
    return {name: [ex for ex in examples if assigned[ex.context] == name] for name in names}


def assignment_digest(splits: dict[str, list[Example]]) -> str:
    """SHA-256 of which distinct contexts each split holds (recorded in prepare's stamp)."""
    record = {name: sorted({ex.context for ex in rows}) for name, rows in splits.items()}
    return hashlib.sha256(json.dumps(record, ensure_ascii=False).encode("utf-8")).hexdigest()


def _split_record(fractions, seed: int, splits: dict[str, list[Example]], **extra) -> dict:
    return {"fractions": list(fractions), "random_seed": seed, **extra,
            "contexts": {name: len({ex.context for ex in rows}) for name, rows in splits.items()},
            "assignment_sha256": assignment_digest(splits)}


def _fields(options: CustomOptions) -> dict:
    return {"context_field": options.context_field, "completion_field": options.completion_field}


def _load_file(path: Path, options: CustomOptions) -> CustomSet:
    fractions = options.split or DEFAULT_SPLIT
    splits = split_by_context(read_rows(path, options), dict(zip(SPLITS, fractions)), options.random_seed,
                              f"--split {','.join(f'{f:g}' for f in fractions)} of {path}")
    record = _split_record(fractions, options.random_seed, splits)
    return CustomSet(splits, {"source": path}, dict.fromkeys(SPLITS, path.name),
                     {**_fields(options), "split": record})


def _load_folder(folder: Path, options: CustomOptions) -> CustomSet:
    files = find_split_files(folder)
    rows = {split: read_rows(path, options) for split, path in files.items()}
    origin = {split: path.name for split, path in files.items()}
    stamp_options = _fields(options)
    if "valid" in files:
        if options.split is not None:
            raise UserError(f"--split: {folder} already holds train, valid and test; --split applies to a "
                            "single --src file, or to carving valid from train when the folder has no valid file")
        return CustomSet({split: rows[split] for split in SPLITS}, files, origin, stamp_options)
    fractions = options.split or DEFAULT_SPLIT
    kept = fractions[0] + fractions[1]
    shares = {"train": fractions[0] / kept if kept else 0.0, "valid": fractions[1] / kept if kept else 0.0}
    carved = split_by_context(rows["train"], shares, options.random_seed,
                              f"valid carved from {files['train']} (train : valid = {fractions[0]:g} : "
                              f"{fractions[1]:g} of --split)")
    splits = {**carved, "test": rows["test"]}
    origin["valid"] = f"{files['train'].name} (carved)"
    record = _split_record(fractions, options.random_seed, carved, valid_from_train=True)
    return CustomSet(splits, files, origin, {**stamp_options, "split": record})


def load(src: str | os.PathLike, options: CustomOptions = CustomOptions()) -> CustomSet:
    """Read and check every source row, and split them: all errors come before anything is written."""
    src = Path(src)
    if options.context_field == options.completion_field:
        raise UserError(f"--context_field and --completion_field are both {options.context_field!r}")
    if src.is_file():
        return _load_file(src, options)
    if src.is_dir():
        return _load_folder(src, options)
    raise UserError(f"--src {src}: no such file or folder")
