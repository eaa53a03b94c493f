"""CLI: source data → ``{split}_formatted.jsonl`` and ``{split}.jsonl`` (upstream's create_datasets.sh).

    python -m gpt2_lora.prepare --task e2e --src data/e2e --out data/e2e [--vocab data/gpt2]
    python -m gpt2_lora.prepare --task synthetic --out data/synthetic     # built-in demo data
    python -m gpt2_lora.prepare --task custom --src rows.csv --out data/mine  # your own data (custom_data)

The output equals what microsoft/LoRA's ``format_converting_*.py`` + ``gpt2_encode.py --add_bos --add_eos``
write, byte for byte. A run whose outputs are newer than its inputs and whose stamp (task, options, source
sizes and times) matches is skipped; ``--force`` redoes it. Every file is written to a temp file and
renamed, so an error or Ctrl-C never leaves a half-written output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import custom_data, data, stamps
from .cli import Parser
from .errors import UserError, cli
from .fileio import atomic_files, atomic_write, check_outputs

STAMP_NAME = ".prepare_stamp.json"
SYNTHETIC_MARKER = ".synthetic_sources"  # in a --task synthetic --out folder
LAYOUT_VERSION = 1  # bump when the written bytes change, so old outputs are redone
TASKS = (*data.READERS, "synthetic", "custom")


@dataclass
class PrepareConfig:
    task: str
    src: Path | None = None
    out: Path | None = None
    vocab: Path | None = None
    force: bool = False
    num_threads: int = 2
    synthetic_sizes: dict[str, int] = field(default_factory=lambda: dict(data.SYNTHETIC_SIZES))
    random_seed: int = 0
    context_field: str = "context"  # --task custom
    completion_field: str = "completion"
    split: tuple[float, float, float] | None = None


def output_paths(out: Path) -> list[Path]:
    return [out / name for split in data.SPLITS for name in (f"{split}_formatted.jsonl", f"{split}.jsonl")]


def _stamp(task: str, sources: dict[str, Path], options: dict) -> dict:
    files = {split: stamps.file_record(path) for split, path in sources.items()}
    return {"layout_version": LAYOUT_VERSION, "task": task, "options": options, "sources": files}


def is_up_to_date(out: Path, stamp: dict) -> bool:
    """True when every output exists, is newer than every source, and the saved stamp equals ``stamp``."""
    sources = [entry["path"] for entry in stamp["sources"].values()]
    return stamps.up_to_date(out / STAMP_NAME, stamp, output_paths(out), sources)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_task(task: str, src: str | os.PathLike, out: str | os.PathLike | None = None,
                 vocab: str | os.PathLike | None = None, force: bool = False, num_threads: int = 2) -> bool:
    """Write the formatted and encoded layers of all three splits; return False if already up to date."""
    sources = data.source_paths(task, src)
    out = Path(out) if out is not None else sources["train"].parent
    stamp = _stamp(task, sources, {})
    if not force and is_up_to_date(out, stamp):
        _log(f"{task}: {out} is up to date (use --force to redo)")
        return False
    _check_out_dir(out)
    _write_layers(task, sources, out, vocab, num_threads, stamp)
    return True


def _saved_task(out: Path) -> str | None:
    try:
        return json.loads((out / STAMP_NAME).read_text(encoding="utf-8")).get("task")
    except (OSError, ValueError, AttributeError):
        return None


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    # root ignores permission bits, so check them: a read-only data mirror must not be written into
    if out.is_dir() and not out.stat().st_mode & 0o222:
        raise UserError(f"--out {out}: the folder is read-only (a data mirror?); pass --out to write elsewhere")


def _write_layers(task: str, sources: dict[str, Path], out: Path, vocab, num_threads: int, stamp: dict) -> None:
    # read and check every split before writing anything, so bad input leaves --out untouched
    reader = data.READERS["e2e" if task == "synthetic" else task]
    examples = {split: reader(path) for split, path in sources.items()}
    origin = {split: path.name for split, path in sources.items()}
    _write_examples(task, examples, sources, origin, out, vocab, num_threads, stamp)


def _write_examples(task: str, examples: dict[str, list[data.Example]], sources: dict[str, Path],
                    origin: dict[str, str], out: Path, vocab, num_threads: int, stamp: dict) -> None:
    from .tokenizer import Tokenizer  # tiktoken loads in ~0.1 s; keep `--help` instant

    tokenizer = Tokenizer(vocab)
    outputs = [out / f"{split}{suffix}.jsonl" for split in examples for suffix in ("_formatted", "")]
    check_outputs({f"--out ({p.name})": p for p in outputs}, {f"source {p.name}": p for p in sources.values()})
    stamps.clear(out / STAMP_NAME)  # an interrupted run must not look finished
    with atomic_files(outputs) as handles:  # every split's layers in place together, or none of them
        for (split, items), formatted, encoded_file in zip(examples.items(), handles[::2], handles[1::2]):
            formatted.write("".join(map(data.formatted_line, items)))
            encoded = data.encode_examples(items, tokenizer, desc=f"{task} {split}", num_threads=num_threads)
            encoded_file.write("".join(data.encoded_line(c, x) for c, x in encoded))
            _log(f"{task} {split}: {len(items):,} examples from {origin[split]} -> {out}/{split}.jsonl")
    stamps.write(out / STAMP_NAME, stamp)


def prepare_synthetic(out: str | os.PathLike, sizes: dict[str, int] | None = None, seed: int = 0,
                      vocab: str | os.PathLike | None = None, force: bool = False, num_threads: int = 2) -> bool:
    """Write the synthetic E2E-style sources (train/valid/test.txt) into ``out`` and prepare them there."""
    out = Path(out)
    sizes = {**data.SYNTHETIC_SIZES, **(sizes or {})}
    options = {"synthetic_sizes": sizes, "random_seed": seed}
    sources = {split: out / name for split, name in data.SOURCE_FILES["e2e"].items()}
    if not force and all(p.is_file() for p in sources.values()) and is_up_to_date(
            out, _stamp("synthetic", sources, options)):
        _log(f"synthetic: {out} is up to date (use --force to redo)")
        return False
    _check_out_dir(out)  # before the sources are written into it
    marker = out / SYNTHETIC_MARKER
    ours = marker.is_file() or _saved_task(out) == "synthetic"  # (folders of older versions: the stamp)
    foreign = [] if ours else [p.name for p in sources.values() if p.exists()]
    if foreign:
        raise UserError(f"--out {out} holds {', '.join(foreign)} not written by --task synthetic; refusing to "
                        "overwrite them (give another --out)")
    generated = data.synthetic_source(sizes, seed)
    out.mkdir(parents=True, exist_ok=True)
    marker.touch()  # this folder's E2E-named sources are synthetic: later runs may rewrite them
    for split, lines in generated.items():
        with atomic_write(sources[split]) as handle:
            handle.write("".join(line + "\n" for line in lines))
    _write_layers("synthetic", sources, out, vocab, num_threads, _stamp("synthetic", sources, options))
    return True


def prepare_custom(src: str | os.PathLike, out: str | os.PathLike, options: custom_data.CustomOptions,
                   vocab: str | os.PathLike | None = None, force: bool = False, num_threads: int = 2) -> bool:
    """Your own rows (``custom_data``) -> the same two layers as E2E; False if already up to date. The
    sources are read and split first: the stamp records the split, so a changed --split or seed redoes it."""
    out = Path(out)
    if Path(src).is_dir() and out.is_dir() and os.path.samefile(src, out):
        raise UserError(f"--out {out}: is the --src folder, where the train.jsonl written would be read as a "
                        "second train file next time; give another --out")
    dataset = custom_data.load(src, options)
    stamp = _stamp("custom", dataset.sources, dataset.stamp_options)
    if not force and is_up_to_date(out, stamp):
        _log(f"custom: {out} is up to date (use --force to redo)")
        return False
    _check_out_dir(out)
    _write_examples("custom", dataset.splits, dataset.sources, dataset.origin, out, vocab, num_threads, stamp)
    return True


def _sizes(text: str) -> dict[str, int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 1:
        raise UserError(f"--synthetic_sizes {text}: expected three positive integers TRAIN,VALID,TEST")
    return dict(zip(data.SPLITS, values))


def parse_args(argv=None) -> PrepareConfig:
    parser = Parser(
        prog="gpt2-lora-prepare", formatter_class=argparse.HelpFormatter,  # the helps state their defaults
        description="Source data -> {train,valid,test}_formatted.jsonl and {train,valid,test}.jsonl "
                    "(byte-identical to microsoft/LoRA format_converting_*.py + gpt2_encode.py).")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--src", type=Path, default=None,
                        help="folder with the task's source files, or a data root holding e2e/, "
                             "webnlg_challenge_2017/ and dart/; --task custom: a .jsonl/.csv/.tsv file, or a "
                             "folder with train.*, valid.* (or dev.*) and test.*")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: the source folder, as upstream)")
    parser.add_argument("--vocab", type=Path, default=None,
                        help="folder with GPT-2 encoder.json and vocab.bpe (default: $GPT2_LORA_VOCAB or data/gpt2)")
    parser.add_argument("--force", action="store_true", help="redo even if the outputs are up to date")
    parser.add_argument("--num_threads", type=int, default=min(8, os.cpu_count() or 1),
                        help="tokenizer threads")
    parser.add_argument("--synthetic_sizes", default=",".join(map(str, data.SYNTHETIC_SIZES.values())),
                        help="--task synthetic: contexts in TRAIN,VALID,TEST (each gets 1-3 references)")
    parser.add_argument("--random_seed", type=int, default=0,
                        help="--task synthetic: generator seed; --task custom: split seed")
    custom = parser.add_argument_group("--task custom")
    custom.add_argument("--context_field", default="context",
                        help="JSONL key / CSV or TSV column of the input (default: context)")
    custom.add_argument("--completion_field", default="completion",
                        help="... of the text to generate (default: completion)")
    custom.add_argument("--split", default=None, type=custom_data.parse_split, metavar="TRAIN,VALID,TEST",
                        help="fractions of the distinct contexts of a single --src file (not given: "
                             f"{','.join(map(str, custom_data.DEFAULT_SPLIT))}); for a folder without valid.*, "
                             "the train : valid ratio of the valid carved from train")
    args = parser.parse_args(argv)
    if args.task == "synthetic":
        if args.out is None and args.src is None:
            raise UserError("--task synthetic: pass --out DIR (where the data set is written)")
    elif args.src is None:
        raise UserError(f"--task {args.task}: --src {'FILE or ' if args.task == 'custom' else ''}DIR is required")
    if args.task == "custom" and args.out is None:
        raise UserError("--task custom: pass --out DIR (where the prepared layers are written)")
    if args.task != "custom" and args.split is not None:
        raise UserError(f"--split: only for --task custom (--task {args.task} has fixed splits)")
    if args.num_threads < 1:
        raise UserError(f"--num_threads {args.num_threads}: must be at least 1")
    return PrepareConfig(task=args.task, src=args.src, out=args.out, vocab=args.vocab, force=args.force,
                         num_threads=args.num_threads, synthetic_sizes=_sizes(args.synthetic_sizes),
                         random_seed=args.random_seed, context_field=args.context_field,
                         completion_field=args.completion_field, split=args.split)


def run(config: PrepareConfig) -> bool:
    if config.task == "custom":
        options = custom_data.CustomOptions(config.context_field, config.completion_field, config.split,
                                            config.random_seed)
        return prepare_custom(config.src, config.out, options, config.vocab, config.force, config.num_threads)
    if config.task == "synthetic":
        return prepare_synthetic(config.out or config.src, config.synthetic_sizes, config.random_seed,
                                 config.vocab, config.force, config.num_threads)
    return prepare_task(config.task, config.src, config.out, config.vocab, config.force, config.num_threads)


@cli
def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
