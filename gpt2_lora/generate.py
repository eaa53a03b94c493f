"""Raw text in, generated text out: the CLI ``python -m gpt2_lora.generate`` and ``generate_text``.

    python -m gpt2_lora.generate --init_checkpoint ADAPTER --base_checkpoint BASE --input contexts.txt --output out.jsonl
    python -m gpt2_lora.generate --init_checkpoint ADAPTER --base_checkpoint BASE --prompt "name : Blue Spice | Type : pub"

Each context is encoded as ``gpt2_lora.prepare`` encodes E2E contexts (the GPT-2 BPE of the text, then
<|endoftext|>), searched by ``gpt2_lora.beam`` (the paper's decoding settings by default), and decoded as
``gpt2_lora.decode`` decodes predictions (cut at the first <|endoftext|> and the first blank line, stripped).
For the same settings the tokens are exactly beam's on the encoded file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import cli as cli_flags
from . import loading
from .beam import PAPER_SETTINGS, BeamSettings, add_decoding_flags, generate, settings_from_args
from .data import EOS_ID
from .decode import first_segment
from .errors import UserError, cli
from .fileio import atomic_write, check_outputs

DEFAULTS = PAPER_SETTINGS  # the paper's E2E decoding (microsoft/LoRA's README beam command)
OUTPUT_SUFFIXES = (".jsonl", ".txt")


def _say(message: str) -> None:
    print(message, file=sys.stderr)


# ---------------------------------------------------------------------------------------- text <-> ids
def encode_contexts(tokenizer, contexts: Sequence[str]) -> list[list[int]]:
    """Each context as prepare encodes it: BPE(context) + [50256]."""
    return [ids + [EOS_ID] for ids in tokenizer.encode_batch(list(contexts))]


def decode_outputs(tokenizer, predictions: Sequence[Sequence[int]]) -> list[str]:
    """Each beam output as decode reads it: up to the first <|endoftext|> and blank line, stripped."""
    return [first_segment(tokenizer.decode(tokens)) for tokens in predictions]


def generate_text(model, contexts: Sequence[str], *, beam: int = DEFAULTS.beam,
                  length_penalty: float = DEFAULTS.length_penalty,
                  no_repeat_ngram_size: int = DEFAULTS.no_repeat_ngram_size,
                  repetition_penalty: float = DEFAULTS.repetition_penalty, min_length: int = DEFAULTS.min_length,
                  eval_len: int = DEFAULTS.eval_len, seq_len: int = DEFAULTS.seq_len,
                  eos_token_id: Sequence[int] = DEFAULTS.eos_token_id, vocab: str | None = None,
                  max_batch_inputs: int = 0, progress: bool = True) -> list[str]:
    """The generated text for each context, in order (the paper's decoding settings by default;
    ``beam=1`` is greedy). ``model`` is what ``gpt2_lora.load`` returns; ``vocab`` a folder with GPT-2's
    encoder.json and vocab.bpe (default: $GPT2_LORA_VOCAB, else data/gpt2)."""
    from .tokenizer import Tokenizer

    if isinstance(contexts, str):
        raise UserError("generate_text takes a list of contexts; wrap a single one as [text]")
    settings = BeamSettings(beam=beam, eval_len=eval_len, seq_len=seq_len, min_length=min_length,
                            length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                            repetition_penalty=repetition_penalty, eos_token_id=tuple(eos_token_id))
    tokenizer = Tokenizer(vocab)
    ids = encode_contexts(tokenizer, contexts)
    return decode_outputs(tokenizer, generate(model, ids, settings, max_batch_inputs, progress=progress))


# ------------------------------------------------------------------------------------------- the input
@dataclass(frozen=True)
class Context:
    text: str
    where: str  # file:line (or --prompt)


def _input_lines(path: str) -> tuple[str, list[str]]:
    """(name, lines without their line ends) of a file, or of stdin for ``-``; strict UTF-8."""
    if path == "-":
        name, data = "<stdin>", getattr(sys.stdin, "buffer", None)
        data = data.read() if data is not None else sys.stdin.read().encode("utf-8")
    else:
        name, file = path, Path(path)
        if not file.is_file():
            raise UserError(f"--input {path}: {'is a directory' if file.is_dir() else 'no such file'}")
        data = file.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = data.count(b"\n", 0, err.start) + 1
        raise UserError(f"{name}:{line_no}: not valid UTF-8 ({err.reason})") from None
    if text.startswith("\ufeff"):  # a byte-order mark (Windows editors, spreadsheet exports): not text
        text = text[1:]
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[-1].strip():  # blank lines after the last context (editors leave them)
        lines.pop()
    return name, lines


def is_jsonl(path: str) -> bool:
    return path != "-" and path.lower().endswith(".jsonl")


def _json_context(line: str, where: str, field: str) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{where}: bad JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if field not in row:
        raise UserError(f"{where}: no field {field!r} (the row has: {', '.join(map(repr, row)) or 'nothing'}; "
                        f"choose one with --context_field)")
    if not isinstance(row[field], str):
        kind = type(row[field]).__name__
        raise UserError(f"{where}: field {field!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not text")
    return row[field]


def read_contexts(path: str, context_field: str = "context") -> list[Context]:
    """One context per line of a text file (or stdin, ``-``), or per row of a ``.jsonl`` file."""
    name, lines = _input_lines(path)
    jsonl = is_jsonl(path)
    contexts = []
    for line_no, line in enumerate(lines, 1):
        where = f"{name}:{line_no}"
        if not line.strip():
            raise UserError(f"{where}: empty line (one context per {'row' if jsonl else 'line'})")
        text = _json_context(line, where, context_field) if jsonl else line
        if not text.strip():
            raise UserError(f"{where}: empty context")
        contexts.append(Context(text, where))
    if not contexts:
        raise UserError(f"{name}: no contexts")
    return contexts


def check_ids(ids: list[list[int]], contexts: list[Context], vocab_size: int, settings: BeamSettings) -> None:
    """Token ids the model has; a note (once) for contexts beam will left-truncate, and for EOS ids the
    model can never emit."""
    for tokens, context in zip(ids, contexts):
        if max(tokens) >= vocab_size:
            raise UserError(f"{context.where}: token id {max(tokens)} is outside the model's vocabulary "
                            f"[0, {vocab_size}) (not a GPT-2 vocabulary?)")
    keep = settings.seq_len - settings.eval_len
    long = [c.where for tokens, c in zip(ids, contexts) if len(tokens) > keep]
    if long:
        _say(f"note: {len(long)} context(s) longer than seq_len - eval_len = {keep} tokens keep their last {keep} "
            f"tokens, as gpt2_lora.beam does (first: {long[0]})")
    outside = sorted(set(settings.eos_token_id) - set(settings.eos_in_vocab(vocab_size)))
    if outside:
        _say(f"note: --eos_token_id {outside} outside the vocabulary can never be generated")


# ------------------------------------------------------------------------------------------ the output
def write_outputs(path: str | None, contexts: list[Context], texts: list[str], handle=None) -> None:
    """.jsonl: {"context", "text"} per input; .txt (and stdout, for None): one output a line. ``handle``:
    the file ``opened_output(path)`` gave (else ``path`` is written here)."""
    one_line = [t.replace("\r\n", " ").replace("\n", " ").replace("\r", " ") for t in texts]
    if path is None:
        sys.stdout.write("".join(t + "\n" for t in one_line))
        return
    lines = ([json.dumps({"context": c.text, "text": t}, ensure_ascii=False) + "\n" for c, t in zip(contexts, texts)]
             if is_jsonl(path) else [t + "\n" for t in one_line])
    if handle is not None:
        handle.writelines(lines)
        return
    with atomic_write(path) as handle:
        handle.writelines(lines)


@contextlib.contextmanager
def opened_output(path: str | None):
    """The ``--output`` file, opened as its temp file before any work (an unwritable place fails before the
    model runs, not after) and put in place when the block ends; None for stdout."""
    if path is None:
        yield None
        return
    with atomic_write(path) as handle:
        yield handle


# ---------------------------------------------------------------------------------------------- the CLI
def _add_decoding_flags(parser: argparse.ArgumentParser, defaults: BeamSettings):
    """gpt2_lora.beam's decoding flags with ``defaults``, and the batching cap."""
    g = add_decoding_flags(parser, defaults, parser.add_argument_group("decoding (gpt2_lora.beam's flags)"))
    g.add_argument("--max_batch_inputs", type=int, default=0,
                   help="most distinct inputs searched together (0: as many as fit in memory)")
    return g


def _settings_from_args(args: argparse.Namespace) -> BeamSettings:
    if args.max_batch_inputs < 0:
        raise UserError(f"--max_batch_inputs must be >= 0 (0: as many as fit), got {args.max_batch_inputs}")
    return settings_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    p = cli_flags.Parser(prog="python -m gpt2_lora.generate",
                         description="Text in, text out: beam search with a trained GPT-2 (LoRA) model.")
    io = p.add_argument_group("input and output")
    source = io.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="contexts, one a line ('-': stdin), or a .jsonl file (see --context_field)")
    source.add_argument("--prompt", help="one context; its output is printed as it is (or see --output)")
    io.add_argument("--context_field", default=None, help="the field of a .jsonl --input that holds the text "
                    "[context]")
    io.add_argument("--output", default=None, help="a .jsonl ({'context', 'text'} per input, in input order) or .txt "
                    "(one output a line, newlines in it made spaces) file [stdout, one output a line]")
    io.add_argument("--vocab", default=None, help="folder with GPT-2's encoder.json and vocab.bpe "
                    "[$GPT2_LORA_VOCAB, else data/gpt2]")
    cli_flags.add_model_flags(p, init_help="the trained checkpoint (ours, full or LoRA-only; an HF or a PEFT "
                              "LoRA folder); its description gives the config, r and alpha")
    cli_flags.add_device_flags(p, precisions=tuple(loading.PRECISIONS), precision_default="fp32",
                               precision_help="fp32: beam's parity path; bf16: faster, may change some tokens")
    _add_decoding_flags(p, DEFAULTS)
    return p


def _check_input(args) -> None:
    if args.prompt is not None and not args.prompt.strip():
        raise UserError("--prompt: empty context")
    if args.context_field is not None and not (args.input and is_jsonl(args.input)):
        given = "--prompt" if args.input is None else f"--input {args.input}"
        raise UserError(f"--context_field: only for a .jsonl --input ({given} is one context a line)")


def _check_output(args) -> None:
    if args.output is None:
        return
    if not args.output.lower().endswith(OUTPUT_SUFFIXES):
        raise UserError(f"--output {args.output}: expected a {' or '.join(OUTPUT_SUFFIXES)} file name")
    check_outputs({"--output": args.output}, {"--input": None if args.input == "-" else args.input,
                                              "--init_checkpoint": args.init_checkpoint,
                                              "--base_checkpoint": args.base_checkpoint})


@cli
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = _settings_from_args(args)
    _check_input(args)
    _check_output(args)
    if args.init_checkpoint is None and args.base_checkpoint is None:
        raise UserError("pass --init_checkpoint (and --base_checkpoint for a LoRA adapter): no random weights")
    contexts = ([Context(args.prompt, "--prompt")] if args.input is None
                else read_contexts(args.input, args.context_field or "context"))
    spec = loading.spec_from_args(args, parser, argv)
    config = loading.resolve_config(spec)
    settings.check(config)
    from .devices import resolve_device
    from .tokenizer import Tokenizer

    tokenizer = Tokenizer(args.vocab)
    ids = encode_contexts(tokenizer, [c.text for c in contexts])
    check_ids(ids, contexts, config.vocab_size, settings)
    device, dtype = resolve_device(args.device), loading.precision_dtype(args.precision)
    if device.type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = False  # the parity path keeps full fp32 matmuls
    with opened_output(args.output) as handle:
        model = loading.load_model(spec, device, dtype, config=config)
        _say(f"generating for {len(contexts)} context(s) on {device} ({args.precision}), beam {settings.beam}")
        predictions = generate(model, ids, settings, max_batch_inputs=args.max_batch_inputs)
        texts = decode_outputs(tokenizer, predictions)
        if args.prompt is not None and args.output is None:
            print(texts[0])  # one context: its output as it is
        else:
            write_outputs(args.output, contexts, texts, handle)
    if args.output is not None:
        _say(f"wrote {len(contexts)} output(s) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
