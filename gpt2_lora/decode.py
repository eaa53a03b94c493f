"""Predictions -> reference and hypothesis files, byte-identical to microsoft/LoRA ``src/gpt2_decode.py``.

References are grouped by context (or by ``--ref_unique_file`` ids), in first-seen order; each group's
hypothesis is the prediction of any of its lines (identical contexts decode identically). A text is cut
at the first ``<|endoftext|>``, then at the first blank line, then stripped. ``e2e`` writes one file:
each group's references one per line, then an empty line. ``webnlg``/``dart`` write a directory of
``reference0 .. reference{ref_num-1}``, a group with fewer references repeating its first one.
``--lower`` lower-cases, ``--tokenize`` splits off every non-word character (upstream's regex).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .cli import Parser
from .data import read_formatted
from .errors import UserError, cli
from .fileio import atomic_files, check_outputs, read_lines
from .tokenizer import Tokenizer

FILTERS = ("all", "seen", "unseen")
REF_TYPES = ("e2e", "webnlg", "dart")


def standard_tokenize(text: str) -> str:
    """Every non-word character becomes its own token; whitespace collapses to single spaces."""
    return " ".join(" ".join(re.split(r"(\W)", text)).split())


def post_process(text: str, tokenize: bool, lower: bool) -> str:
    if lower:
        text = text.lower()
    return standard_tokenize(text) if tokenize else text


def first_segment(text: str) -> str:
    """The text before the first <|endoftext|> and the first blank line, stripped."""
    return text.split("<|endoftext|>")[0].split("\n\n")[0].strip()


def _json_lines(path: str, what: str):
    for line_no, line in enumerate(read_lines(path, what), 1):
        try:
            yield f"{path}:{line_no}", json.loads(line.strip())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{line_no}: bad JSON ({err.msg})") from None


def _field(record, key: str, where: str, kind):
    if not isinstance(record, dict) or key not in record:
        raise UserError(f"{where}: missing key {key!r}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise UserError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def read_unique_ids(path: str) -> list[int]:
    ids = []
    for line_no, line in enumerate(read_lines(path, "--ref_unique_file"), 1):
        try:
            ids.append(int(line.strip()))
        except ValueError:
            raise UserError(f"{path}:{line_no}: expected an integer id, got {line.strip()!r}") from None
    return ids


def group_references(input_file: str, filter_: str = "all", unique_ids: list[int] | None = None):
    """(groups, keys): groups maps key -> references in first-seen order; keys[i] is line i's key."""
    groups: dict[object, list[str]] = {}
    keys: list[object] = []
    for line_id, (context, completion, cate) in enumerate(read_formatted(input_file, "--input_file")):
        if filter_ == "all":
            keep = True
        elif cate is None:
            raise UserError(f"{input_file}:{line_id + 1}: --filter {filter_} needs a 'cate' field "
                            "(WebNLG formatted data)")
        else:
            keep = cate == (filter_ == "seen")
        if unique_ids is None:
            key = context
        elif line_id < len(unique_ids):
            key = unique_ids[line_id]
        else:
            raise UserError(f"--ref_unique_file has {len(unique_ids)} ids, fewer than the lines of {input_file}")
        keys.append(key)
        if keep:
            groups.setdefault(key, []).append(first_segment(completion))
    return groups, keys


def read_hypotheses(sample_file: str, keys: list, groups: dict, tokenizer: Tokenizer) -> dict:
    """key -> decoded prediction, for the keys in ``groups`` (the last prediction of a key wins)."""
    samples = {}
    for where, record in _json_lines(sample_file, "--sample_file"):
        line_id = _field(record, "id", where, int)
        tokens = _field(record, "predict", where, list)
        if not all(type(t) is int for t in tokens):  # JSON true would pass as token 1
            raise UserError(f"{where}: 'predict' holds something that is not a GPT-2 token id")
        if not 0 <= line_id < len(keys):
            raise UserError(f"{where}: id {line_id} is outside the {len(keys)} lines of --input_file")
        key = keys[line_id]
        if key in groups:
            try:
                samples[key] = first_segment(tokenizer.decode(tokens))
            except (KeyError, ValueError, TypeError, OverflowError):
                raise UserError(f"{where}: 'predict' holds something that is not a GPT-2 token id") from None
    missing = [i for i, key in enumerate(keys) if key in groups and key not in samples]
    if missing:
        raise UserError(f"--sample_file has no prediction for --input_file line {missing[0] + 1} "
                        f"({len(missing)} line(s) without one)")
    return samples


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Every file decode writes, by flag: webnlg/dart references are reference0.. in a folder."""
    outputs = {"--output_pred_file": Path(args.output_pred_file)}
    if args.ref_type == "e2e":
        outputs["--output_ref_file"] = Path(args.output_ref_file)
    else:
        if Path(args.output_ref_file).is_file():
            raise UserError(f"--output_ref_file {args.output_ref_file}: is a file; --ref_type {args.ref_type} "
                            "writes reference0.. into a folder")
        for fid in range(args.ref_num):
            outputs[f"--output_ref_file/reference{fid}"] = Path(args.output_ref_file) / f"reference{fid}"
    return outputs


def write_outputs(args: argparse.Namespace, groups: dict, samples: dict) -> None:
    """The reference file(s) and the hypothesis file (``_outputs``), put in place together."""
    fix = lambda text: post_process(text, args.tokenize, args.lower)  # noqa: E731
    outputs = _outputs(args)
    pred_path = outputs.pop("--output_pred_file")
    with atomic_files([*outputs.values(), pred_path]) as files:
        *refs, preds = files
        for key, references in groups.items():
            if args.ref_type == "e2e":  # one file: each group's references, then a blank line
                refs[0].writelines([*(fix(ref) + "\n" for ref in references), "\n"])
            else:  # a file per reference number, padded with the group's first reference
                for fid, column in enumerate(refs):
                    column.write(fix(references[fid] if len(references) > fid else references[0]) + "\n")
            preds.write(fix(samples[key]) + "\n")


def build_parser() -> Parser:
    p = Parser(prog="python -m gpt2_lora.decode",
               description="Beam predictions -> reference/hypothesis files (as upstream gpt2_decode.py).")
    p.add_argument("--vocab", type=str, default=None, help="folder with encoder.json and vocab.bpe")
    p.add_argument("--sample_file", default=None, type=str, help="predictions jsonl (gpt2_lora.beam output)")
    p.add_argument("--input_file", default=None, type=str, help="formatted jsonl of the same split")
    p.add_argument("--output_ref_file", default=None, type=str, help="reference file (e2e) or folder")
    p.add_argument("--output_pred_file", default=None, type=str, help="hypothesis file")
    p.add_argument("--ref_unique_file", default=None, type=str, help="one group id per input line")
    p.add_argument("--ref_type", default="e2e", choices=REF_TYPES, help="reference layout")
    p.add_argument("--ref_num", default=4, type=int, help="reference files (webnlg, dart)")
    p.add_argument("--tokenize", action="store_true", help="split off non-word characters")
    p.add_argument("--lower", action="store_true", help="lower-case")
    p.add_argument("--filter", default="all", choices=FILTERS, help="webnlg: seen / unseen categories only")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("sample_file", "input_file", "output_ref_file", "output_pred_file"):
        if getattr(args, flag) is None:
            raise UserError(f"--{flag} is required")
    if args.ref_type != "e2e" and args.ref_num < 1:
        raise UserError(f"--ref_num must be >= 1, got {args.ref_num}")
    check_outputs(_outputs(args), {"--sample_file": args.sample_file, "--input_file": args.input_file,
                                   "--ref_unique_file": args.ref_unique_file})
    tokenizer = Tokenizer(args.vocab)
    unique_ids = read_unique_ids(args.ref_unique_file) if args.ref_unique_file else None
    groups, keys = group_references(args.input_file, args.filter, unique_ids)
    if not groups:
        raise UserError(f"{args.input_file}: no lines left after --filter {args.filter}")
    samples = read_hypotheses(args.sample_file, keys, groups, tokenizer)
    write_outputs(args, groups, samples)
    print(f"{len(keys)} lines, {len(groups)} groups -> {args.output_ref_file}, {args.output_pred_file}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
