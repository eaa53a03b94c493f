"""gpt2_lora.generate: text in, text out. The same tokens as gpt2_lora.beam on the file prepare encodes, input
order kept, stdin / .txt / .jsonl / --prompt, the Python API, and one-line errors for bad input."""

from __future__ import annotations

import io
import json

import pytest
import torch

import gpt2_lora
from gpt2_lora import beam as beam_mod
from gpt2_lora import data
from gpt2_lora import generate as gen
from gpt2_lora.decode import first_segment
from helpers import hf_base, lora_model, save_adapter

pytest.importorskip("transformers")
FAST = ["--beam", "3", "--eval_len", "8", "--seq_len", "64"]  # small, so the tests run quickly
CONTEXTS = [data.synthetic_mr_string(mr) for mr in (
    {"name": "Blue Harbour", "Type": "pub", "area": "riverside"},
    {"name": "The Crown", "food": "Indian", "price": "cheap", "near": "City Hall"},
    {"name": "Orchid", "customer rating": "5 out of 5"},
    {"name": "The Anchor", "Type": "coffee shop", "family friendly": "no"},
)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(base folder, adapter) of a tiny GPT-2 with the real GPT-2 vocabulary size."""
    folder = tmp_path_factory.mktemp("gen")
    base = hf_base(folder / "base", vocab_size=50257, n_positions=128, n_embd=16, n_layer=2, n_head=2)
    return base, save_adapter(lora_model(base, r=2, alpha=8, std=1.0), folder / "model.7.pt", base)


@pytest.fixture
def run(files, vocab_dir):
    base, adapter = files

    def run(*flags):
        return gen.main([*flags, "--init_checkpoint", str(adapter), "--base_checkpoint", str(base),
                         "--vocab", str(vocab_dir), "--device", "cpu"])
    return run


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_tokens_as_beam_on_the_encoded_file(run, files, vocab_dir, tokenizer, tmp_path, monkeypatch):
    base, adapter = files
    examples = [data.Example(c, "unused") for c in CONTEXTS]
    encoded = data.encode_examples(examples, tokenizer)  # what prepare writes
    (tmp_path / "test.jsonl").write_text("".join(data.encoded_line(c, x) for c, x in encoded))
    assert beam_mod.main(["--data", str(tmp_path / "test.jsonl"), *FAST, "--length_penalty", "0.8",
                          "--eos_token_id", "628", "--init_checkpoint", str(adapter), "--base_checkpoint", str(base),
                          "--work_dir", str(tmp_path), "--output_file", "beam.jsonl", "--device", "cpu"]) == 0
    beam_tokens = [r["predict"] for r in _records(tmp_path / "beam.jsonl")]

    seen = []
    decode = gen.decode_outputs
    monkeypatch.setattr(gen, "decode_outputs", lambda tok, predictions: seen.append(predictions) or decode(tok, predictions))
    (tmp_path / "contexts.txt").write_text("".join(c + "\n" for c in CONTEXTS))
    assert run("--input", str(tmp_path / "contexts.txt"), "--output", str(tmp_path / "out.jsonl"), *FAST) == 0
    assert seen == [beam_tokens]
    assert gen.encode_contexts(tokenizer, CONTEXTS) == [c for c, _ in encoded]
    texts = [first_segment(tokenizer.decode(t)) for t in beam_tokens]
    assert _records(tmp_path / "out.jsonl") == [{"context": c, "text": t} for c, t in zip(CONTEXTS, texts)]
    assert len(set(texts)) > 1  # the model's outputs depend on the context, so the order checks mean something


def test_order_kept_and_python_api_agrees(run, files, vocab_dir, tmp_path):
    base, adapter = files
    contexts = CONTEXTS[::-1] + CONTEXTS[:1]  # reversed, and a repeat
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"mr": c, "id": i}) + "\n" for i, c in enumerate(contexts)))
    assert run("--input", str(tmp_path / "in.jsonl"), "--context_field", "mr", "--output", str(tmp_path / "o.jsonl"),
               *FAST) == 0
    got = _records(tmp_path / "o.jsonl")
    model = gpt2_lora.load(base_checkpoint=base, adapter=adapter, device="cpu")
    one_by_one = [gpt2_lora.generate_text(model, [c], beam=3, eval_len=8, seq_len=64, vocab=vocab_dir,
                                          progress=False)[0] for c in contexts]
    assert got == [{"context": c, "text": t} for c, t in zip(contexts, one_by_one)]
    assert got[4]["text"] == got[3]["text"]  # the repeated context (CONTEXTS[0])
    batch = gpt2_lora.generate_text(model, contexts, beam=3, eval_len=8, seq_len=64, vocab=vocab_dir, progress=False)
    assert batch == one_by_one


def test_stdin_and_txt_output(run, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("".join(c + "\r\n" for c in CONTEXTS).encode())))
    assert run("--input", "-", "--output", str(tmp_path / "o.txt"), *FAST) == 0
    (tmp_path / "c.txt").write_text("".join(c + "\n" for c in CONTEXTS))
    assert run("--input", str(tmp_path / "c.txt"), "--output", str(tmp_path / "o.jsonl"), *FAST) == 0
    expected = [r["text"].replace("\n", " ") for r in _records(tmp_path / "o.jsonl")]
    assert (tmp_path / "o.txt").read_text(encoding="utf-8").split("\n") == [*expected, ""]


def test_prompt_and_input_print_to_stdout(run, tmp_path, capsys):
    (tmp_path / "c.txt").write_text("".join(c + "\n" for c in CONTEXTS))
    assert run("--input", str(tmp_path / "c.txt"), "--output", str(tmp_path / "o.jsonl"), *FAST) == 0
    texts = [r["text"] for r in _records(tmp_path / "o.jsonl")]
    capsys.readouterr()
    assert run("--prompt", CONTEXTS[1], *FAST) == 0
    assert capsys.readouterr().out == texts[1] + "\n"
    assert run("--input", str(tmp_path / "c.txt"), *FAST) == 0
    assert capsys.readouterr().out == "".join(t.replace("\n", " ") + "\n" for t in texts)


def test_paper_defaults_and_greedy(run, files, tokenizer, capsys):
    parser = gen.build_parser()
    settings = gen._settings_from_args(parser.parse_args(["--prompt", "x"]))
    assert settings == beam_mod.BeamSettings(beam=10, eval_len=64, seq_len=512, min_length=0, length_penalty=0.8,
                                             no_repeat_ngram_size=4, repetition_penalty=1.0, eos_token_id=(50256, 628))
    assert run("--prompt", CONTEXTS[0], "--beam", "1", "--eval_len", "8", "--seq_len", "64",
               "--no_repeat_ngram_size", "0") == 0
    base, adapter = files
    model = gpt2_lora.load(base_checkpoint=base, adapter=adapter, device="cpu")
    tokens = gen.encode_contexts(tokenizer, [CONTEXTS[0]])[0]
    generated = []
    with torch.no_grad():
        for _ in range(8):  # greedy by hand: the most likely next token, until an EOS
            generated.append(int(model(torch.tensor([tokens + generated]))[0, -1].argmax()))
            if generated[-1] in (50256, 628):
                break
    assert capsys.readouterr().out == first_segment(tokenizer.decode(generated)) + "\n"


def test_over_long_context_is_truncated_as_beam_does_with_one_note(run, tmp_path, capsys, tokenizer):
    long_context = " | ".join(CONTEXTS * 3)
    (tmp_path / "c.txt").write_text(f"{long_context}\n{CONTEXTS[0]}\n{long_context}\n")
    assert len(tokenizer.encode_ordinary(long_context)) + 1 > 56
    assert run("--input", str(tmp_path / "c.txt"), "--output", str(tmp_path / "o.jsonl"), *FAST) == 0
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "note: 2 context(s) longer than seq_len - eval_len = 56 tokens" in err
    assert f"(first: {tmp_path / 'c.txt'}:1)" in err
    texts = [r["text"] for r in _records(tmp_path / "o.jsonl")]
    assert texts[0] == texts[2]


@pytest.mark.parametrize("content, name, flags, message", [
    (None, "missing.txt", [], "--input {dir}/missing.txt: no such file"),
    ("a\n\nb\n", "c.txt", [], "{dir}/c.txt:2: empty line (one context per line)"),
    ('{"context": "a"}\n{"context": \n', "c.jsonl", [], "{dir}/c.jsonl:2: bad JSON"),
    ('{"mr": "a", "ref": "b"}\n', "c.jsonl", [], "{dir}/c.jsonl:1: no field 'context' (the row has: 'mr', 'ref'"),
    ('{"context": ["a"]}\n', "c.jsonl", [], "{dir}/c.jsonl:1: field 'context' is a list, not text"),
    ("", "c.txt", [], "{dir}/c.txt: no contexts"),
    ("a\n", "c.txt", ["--output", "{dir}/o.csv"], "--output {dir}/o.csv: expected a .jsonl or .txt file name"),
    ("a\n", "c.txt", ["--output", "{dir}/c.txt"], "is the --input file"),
    ('{"context": 5}\n', "c.jsonl", [], "{dir}/c.jsonl:1: field 'context' is an int, not text"),
    ("a\n", "c.txt", ["--context_field", "mr"], "--context_field: only for a .jsonl --input (--input {dir}/c.txt"),
    ("\n \n", "c.txt", [], "{dir}/c.txt: no contexts"),
])
def test_bad_input_is_one_line(run, tmp_path, capsys, content, name, flags, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(SystemExit) as err:
        run("--input", str(tmp_path / name), *[f.format(dir=tmp_path) for f in flags], *FAST)
    text = capsys.readouterr().err
    assert err.value.code == 2 and text.count("\n") == 1 and message.format(dir=tmp_path) in text, text


def test_no_weights_no_generation(capsys):
    with pytest.raises(SystemExit):
        gen.main(["--prompt", "x", "--device", "cpu"])
    assert "pass --init_checkpoint" in capsys.readouterr().err


def test_byte_order_mark_and_trailing_blank_lines_are_not_contexts(run, tmp_path):
    rows = "".join(json.dumps({"context": c}) + "\n" for c in CONTEXTS)
    (tmp_path / "clean.jsonl").write_text(rows)
    assert run("--input", str(tmp_path / "clean.jsonl"), "--output", str(tmp_path / "clean.out.jsonl"), *FAST) == 0
    expected = _records(tmp_path / "clean.out.jsonl")
    assert [r["context"] for r in expected] == CONTEXTS
    (tmp_path / "bom.JSONL").write_bytes(("\ufeff" + rows + "\n \n").encode("utf-8"))  # any case of .jsonl
    (tmp_path / "bom.txt").write_bytes(("\ufeff" + "".join(c + "\r\n" for c in CONTEXTS) + "\r\n\n").encode())
    for name in ("bom.JSONL", "bom.txt"):
        assert run("--input", str(tmp_path / name), "--output", str(tmp_path / f"{name}.out.jsonl"), *FAST) == 0
        assert _records(tmp_path / f"{name}.out.jsonl") == expected, name


def test_empty_prompt_is_refused(run, capsys):
    for prompt in ("", "  "):
        with pytest.raises(SystemExit) as err:
            run("--prompt", prompt, *FAST)
        assert err.value.code == 2 and capsys.readouterr().err == "error: --prompt: empty context\n"


def test_an_unwritable_output_fails_before_the_model_runs(run, tmp_path, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr(gen.loading, "load_model", lambda *a, **k: loaded.append(a) or pytest.fail("model loaded"))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("gpt2_lora.fileio.tempfile.mkstemp", refuse)
    with pytest.raises(SystemExit) as err:
        run("--prompt", CONTEXTS[0], "--output", str(tmp_path / "o.jsonl"), *FAST)
    assert err.value.code == 2 and not loaded and not (tmp_path / "o.jsonl").exists()
    assert capsys.readouterr().err.endswith(f"error: cannot write {tmp_path / 'o.jsonl'}: Permission denied\n")


def test_eos_ids_outside_the_vocabulary_get_a_note(run, capsys):
    assert run("--prompt", CONTEXTS[0], "--eos_token_id", "99999", *FAST) == 0
    assert "note: --eos_token_id [99999] outside the vocabulary can never be generated" in capsys.readouterr().err


def test_help_states_defaults_only_where_there_is_one():
    text = " ".join(gen.build_parser().format_help().split())  # unwrapped
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "[$GPT2_LORA_VOCAB, else data/gpt2]" in text and "(default: gpt2.md)" in text and "(default: 10)" in text
