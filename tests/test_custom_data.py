"""prepare --task custom: JSONL / CSV / TSV sources, folder and single-file splits, the stamp, bad input,
and the custom test split through decode and the E2E scorer (multi-reference, grouped by context)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from gpt2_lora import custom_data, data, decode, prepare
from gpt2_lora.data import read_encoded
from helpers import PREPARED_FILES, eval_script, write_jsonl

# (context, completion) rows per split; quotes, commas, tabs-free text, non-ASCII and a repeated context
ROWS = {
    "train": [("name : Café Rouge | food : French", 'Café Rouge serves French food, "à la carte" .'),
              ("name : Blue | area : riverside", "Blue is by the riverside ."),
              ("name : Café Rouge | food : French", "French food is served at Café Rouge .")],
    "valid": [("name : Mill | food : Thai", "The Mill serves Thai food .")],
    "test": [("name : Ox | price : cheap", "The Ox is cheap ."),
             ("name : Elm | price : high", "Elm is expensive ."),
             ("name : Ox | price : cheap", "Prices at the Ox are low .")],
}


def _write_jsonl(path: Path, rows, fields=("context", "completion")) -> Path:
    return write_jsonl(path, (dict(zip(fields, row)) for row in rows))


def _write_table(path: Path, rows, fields=("context", "completion"), delimiter=",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(fields)
        writer.writerows(rows)
    return path


def _write(path: Path, rows, fields=("context", "completion")) -> Path:
    if path.suffix == ".jsonl":
        return _write_jsonl(path, rows, fields)
    return _write_table(path, rows, fields, "\t" if path.suffix == ".tsv" else ",")


def _prepare(src, out, vocab_dir, *extra) -> bool:
    return prepare.run(prepare.parse_args(["--task", "custom", "--src", str(src), "--out", str(out),
                                           "--vocab", str(vocab_dir), *extra]))


def _layers(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in PREPARED_FILES}


def _formatted(out: Path, split: str) -> list[tuple[str, str]]:
    return [(ex.context, ex.completion) for ex in data.read_formatted(out / f"{split}_formatted.jsonl")]


def _stamp(out: Path) -> dict:
    return json.loads((out / prepare.STAMP_NAME).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------- formats and layers
@pytest.mark.parametrize("ext", [".jsonl", ".csv", ".tsv"])
def test_folder_layers_are_the_e2e_layers(tmp_path, vocab_dir, tokenizer, ext):
    src = tmp_path / "src"
    for split, rows in ROWS.items():
        _write(src / f"{'dev' if split == 'valid' else split}{ext}", rows)  # dev.* is the valid split too
    assert _prepare(src, tmp_path / "out", vocab_dir) is True
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted([*PREPARED_FILES, prepare.STAMP_NAME])
    for split, rows in ROWS.items():
        assert _formatted(out, split) == rows
        encoded = read_encoded(out / f"{split}.jsonl")  # what training and beam search read
        assert [list(map(list, pair)) for pair in encoded] == [
            [tokenizer.encode_ordinary(c) + [data.EOS_ID], tokenizer.encode_ordinary(" " + x) + [data.EOS_ID]]
            for c, x in rows]
    # the same rows as an E2E source give byte-identical layers: custom data is prepared the E2E way
    e2e = tmp_path / "e2e"
    e2e.mkdir()
    for split, rows in ROWS.items():
        (e2e / data.SOURCE_FILES["e2e"][split]).write_text("".join(f"{c}||{x}\n" for c, x in rows), encoding="utf-8")
    prepare.prepare_task("e2e", e2e, tmp_path / "e2e_out", vocab_dir)
    assert _layers(out) == _layers(tmp_path / "e2e_out")


def test_field_names_quoting_bom_and_extra_columns(tmp_path, vocab_dir):
    src = tmp_path / "rows.csv"
    # a spreadsheet export: byte-order mark, CRLF, a quoted field spanning two lines in the context
    src.write_bytes("\ufeffid,mr,text\r\n1,\"a, \"\"b\"\"\nc\",Text one .\r\n2,d,\"Text, two .\"\r\n"
                    "3,e,Three .\r\n".encode("utf-8"))
    out = tmp_path / "out"
    args = ("--context_field", "mr", "--completion_field", "text", "--split", "0.34,0.33,0.33")
    assert _prepare(src, out, vocab_dir, *args) is True
    rows = [row for split in data.SPLITS for row in _formatted(out, split)]
    assert sorted(rows) == sorted([('a, "b"\nc', "Text one ."), ("d", "Text, two ."), ("e", "Three .")])
    assert _stamp(out)["options"]["context_field"] == "mr"


# ------------------------------------------------------------------------------------------- splitting
def _many_rows(contexts: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(contexts):
        context = f"item : {i} | colour : {rng.choice(['red', 'blue'])}"
        rows += [(context, f"Item {i}, reference {j} .") for j in range(rng.randint(1, 3))]
    rng.shuffle(rows)  # the references of one context are not adjacent
    return rows


def test_single_file_split_by_context_seeded_and_stamped(tmp_path, vocab_dir):
    rows = _many_rows()
    src = _write_jsonl(tmp_path / "all.jsonl", rows)
    out = tmp_path / "out"
    args = ("--split", "0.8,0.1,0.1", "--random_seed", "3")
    assert _prepare(src, out, vocab_dir, *args) is True
    splits = {split: _formatted(out, split) for split in data.SPLITS}
    contexts = {split: {c for c, _ in items} for split, items in splits.items()}
    assert {split: len(c) for split, c in contexts.items()} == {"train": 32, "valid": 4, "test": 4}
    assert not (contexts["train"] & contexts["valid"] or contexts["train"] & contexts["test"]
                or contexts["valid"] & contexts["test"])
    for split, items in splits.items():  # every row of a context goes with it, in file order
        assert items == [row for row in rows if row[0] in contexts[split]]
    record = _stamp(out)["options"]["split"]
    examples = {split: [data.Example(c, x) for c, x in items] for split, items in splits.items()}
    assert record == {"fractions": [0.8, 0.1, 0.1], "random_seed": 3,
                      "contexts": {"train": 32, "valid": 4, "test": 4},
                      "assignment_sha256": custom_data.assignment_digest(examples)}
    first = _layers(out)
    assert _prepare(src, out, vocab_dir, *args) is False  # up to date
    assert _prepare(src, tmp_path / "again", vocab_dir, *args) is True and _layers(tmp_path / "again") == first
    assert _stamp(tmp_path / "again") == _stamp(out)
    # a changed seed or --split re-prepares, with another assignment; going back gives the same bytes
    assert _prepare(src, out, vocab_dir, "--split", "0.8,0.1,0.1", "--random_seed", "4") is True
    assert _stamp(out)["options"]["split"]["assignment_sha256"] != record["assignment_sha256"]
    assert _layers(out) != first
    assert _prepare(src, out, vocab_dir, "--split", "0.7,0.15,0.15", "--random_seed", "3") is True
    assert _stamp(out)["options"]["split"]["contexts"] == {"train": 28, "valid": 6, "test": 6}
    assert _prepare(src, out, vocab_dir, *args) is True and _layers(out) == first


def test_split_depends_on_contexts_and_seed_not_row_order():
    rows = [data.Example(c, x) for c, x in _many_rows()]
    shares = dict(zip(data.SPLITS, (0.6, 0.2, 0.2)))
    one = custom_data.split_by_context(rows, shares, 7, "test")
    other = custom_data.split_by_context(list(reversed(rows)), shares, 7, "test")
    assert custom_data.assignment_digest(one) == custom_data.assignment_digest(other)
    assert custom_data.assignment_digest(custom_data.split_by_context(rows, shares, 8, "test")) != \
        custom_data.assignment_digest(one)


def test_folder_without_valid_carves_it_from_train(tmp_path, vocab_dir):
    train = _many_rows(20)
    src = tmp_path / "src"
    _write_table(src / "train.csv", train)
    _write_table(src / "test.csv", ROWS["test"])
    out = tmp_path / "out"
    assert _prepare(src, out, vocab_dir, "--split", "0.8,0.2,0") is True  # test's share is unused here
    splits = {split: _formatted(out, split) for split in data.SPLITS}
    assert splits["test"] == ROWS["test"]  # given splits are kept as they are
    train_contexts, valid_contexts = ({c for c, _ in splits[s]} for s in ("train", "valid"))
    assert len(valid_contexts) == 4 and len(train_contexts) == 16 and not train_contexts & valid_contexts
    assert sorted(splits["train"] + splits["valid"]) == sorted(train)
    record = _stamp(out)["options"]["split"]
    assert record["valid_from_train"] is True and record["random_seed"] == 0
    assert set(_stamp(out)["sources"]) == {"train", "test"}
    assert _prepare(src, out, vocab_dir, "--split", "0.8,0.2,0", "--random_seed", "1") is True
    assert {c for c, _ in _formatted(out, "valid")} != valid_contexts


def test_interrupted_custom_prepare_leaves_nothing(tmp_path, vocab_dir, monkeypatch):
    src = _write_jsonl(tmp_path / "all.jsonl", _many_rows())
    real = data.encode_examples

    def fail_on_test(items, *args, desc=None, **kwargs):
        if desc and desc.endswith("test"):
            raise KeyboardInterrupt
        return real(items, *args, desc=desc, **kwargs)

    monkeypatch.setattr(data, "encode_examples", fail_on_test)
    with pytest.raises(KeyboardInterrupt):
        _prepare(src, tmp_path / "out", vocab_dir)
    assert list((tmp_path / "out").iterdir()) == []  # train and valid were written, but not put in place


# ------------------------------------------------------------------------------------------- bad input
def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        prepare.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err[len("error: "):].strip()


BAD_FILES = [  # (file name, bytes, line, what the message says)
    ("a.jsonl", b'{"context": "x", "completion": "y"}\n{"context": "x", "text": "y", "id": 1}\n', 2,
     "no field 'completion' (the row has: 'context', 'text', 'id')"),
    ("a.jsonl", b'{"context": "x", "completion": "y"}\n\n{"context": "  ", "completion": "y"}\n', 3,
     "empty context (field 'context')"),
    ("a.jsonl", b'{"context": "x", "completion": ""}\n', 1, "empty completion (field 'completion')"),
    ("a.jsonl", b'{"context": "x", "completion": "y"}\n{"context": "x",\n', 2, "bad JSON ("),
    ("a.jsonl", b'["x", "y"]\n', 1, "expected a JSON object, found list"),
    ("a.jsonl", b'{"context": 5, "completion": "y"}\n', 1, "field 'context' (context) must be a string, found int"),
    ("a.jsonl", b'{"context": null, "completion": "y"}\n', 1, "field 'context' (context) must be a string, found null"),
    ("a.jsonl", b'{"context": "x", "completion": "y"}\n{"context": "\xff", "completion": "y"}\n', 2,
     "not valid UTF-8"),
    ("a.jsonl", b'{"context": "x", "completion": "two\\nlines"}\n', 1, "holds a line break"),
    ("a.jsonl", b'{"context": "x", "completion": "a <|endoftext|> b"}\n', 1, "holds '<|endoftext|>'"),
    ("a.csv", b"context,completion\nx,y\nx,y,z\n", 3, "3 fields, but the header (line 1) has 2"),
    ("a.csv", b"context,text\nx,y\n", 1, "no column 'completion' in the header (it has: 'context', 'text')"),
    ("a.csv", b"context,completion,completion\nx,y,z\n", 1, "two columns 'completion' in the header"),
    ("a.csv", b'context,completion\nx,y\n"x"y,z\n', 3, "bad CSV row"),
    ("a.csv", b'context,completion\nx,y\nx,"multi\nline"\n', 3, "holds a line break"),
    ("a.csv", b"context,completion\nx,\n", 2, "empty completion"),
    ("a.tsv", b"context\tcompletion\nx\ty\nx\n", 3, "1 fields, but the header (line 1) has 2"),
]


@pytest.mark.parametrize("name, content, line, message", BAD_FILES)
def test_bad_rows_name_file_and_line(tmp_path, vocab_dir, capsys, name, content, line, message):
    src = tmp_path / name
    src.write_bytes(content)
    out = tmp_path / "out"
    err = _fails(["--task", "custom", "--src", str(src), "--out", str(out), "--vocab", str(vocab_dir)], capsys)
    assert err.startswith(f"{src}:{line}: ") and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("files, flags, message", [
    ({"train.csv": "context,completion\nx,y\n"}, (), "no test file (expected one of test.jsonl, test.csv, test.tsv"),
    ({"valid.csv": "c\n", "test.csv": "c\n", "train.json": "{}"}, (), "no train file"),
    ({"train.csv": "context,completion\nx,y\n", "train.jsonl": "", "test.csv": ""}, (),
     "train.csv and train.jsonl are both train files"),
    ({"train.csv": "context,completion\nx,y\n", "valid.csv": "context,completion\nv,w\n", "dev.tsv": "",
      "test.csv": ""}, (), "dev.tsv and valid.csv are both valid files"),
    ({"train.csv": "context,completion\nx,y\n", "valid.csv": "context,completion\nv,w\n",
      "test.csv": "context,completion\n"}, (), "test.csv: no rows (its split would be empty)"),
    ({"train.csv": "context,completion\nx,y\n", "valid.csv": "context,completion\nv,w\n",
      "test.csv": "context,completion\nt,u\n"}, ("--split", "0.8,0.1,0.1"), "already holds train, valid and test"),
    ({"train.csv": "context,completion\nx,y\nz,w\n", "test.csv": "context,completion\nt,u\n"}, (),
     "the valid split would be empty (0 of the 2 distinct contexts)"),
])
def test_bad_folders(tmp_path, vocab_dir, capsys, files, flags, message):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in files.items():
        (src / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    err = _fails(["--task", "custom", "--src", str(src), "--out", str(out), "--vocab", str(vocab_dir), *flags],
                 capsys)
    assert message in err, err
    assert str(src) in err  # names the folder or the file
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (("--split=-0.1,0.6,0.5",), "--split -0.1,0.6,0.5: fractions must not be negative"),
    (("--split", "0.5,0.2,0.2"), "--split 0.5,0.2,0.2: fractions must sum to 1 (they sum to 0.9)"),
    (("--split", "0.5,0.5"), "--split 0.5,0.5: expected three fractions"),
    (("--split", "0.9,0.05,0.05"), "--split 0.9,0.05,0.05 of "),  # 3 contexts: valid would be empty
    (("--context_field", "c", "--completion_field", "c"), "--context_field and --completion_field are both 'c'"),
    (("--no_such_flag",), "unrecognized arguments: --no_such_flag"),
])
def test_bad_flags(tmp_path, vocab_dir, capsys, flags, message):
    src = _write_jsonl(tmp_path / "all.jsonl", ROWS["test"])
    err = _fails(["--task", "custom", "--src", str(src), "--out", str(tmp_path / "out"), "--vocab", str(vocab_dir),
                  *flags], capsys)
    assert err.startswith(message), err
    assert not (tmp_path / "out").exists()


def test_custom_needs_out_and_split_is_custom_only(tmp_path, capsys):
    assert _fails(["--task", "custom", "--src", str(tmp_path)], capsys).startswith("--task custom: pass --out DIR")
    assert _fails(["--task", "custom"], capsys) == "--task custom: --src FILE or DIR is required"
    assert _fails(["--task", "e2e", "--src", str(tmp_path), "--split", "0.8,0.1,0.1"], capsys).startswith(
        "--split: only for --task custom")


def test_sources_are_never_overwritten(tmp_path, vocab_dir, capsys):
    src = tmp_path / "src"
    for split, rows in ROWS.items():
        _write_jsonl(src / f"{split}.jsonl", _many_rows(6) if split == "test" else rows)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    err = _fails(["--task", "custom", "--src", str(src), "--out", str(src), "--vocab", str(vocab_dir)], capsys)
    assert "is the --src folder" in err
    # a single source file named like an output, in --out
    err = _fails(["--task", "custom", "--src", str(src / "test.jsonl"), "--out", str(src), "--split", "0.34,0.33,0.33",
                  "--vocab", str(vocab_dir)], capsys)
    assert "test.jsonl) " in err and "is the source test.jsonl file" in err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


# ------------------------------------------------------------------------------- decode and score (E2E way)
def test_custom_test_split_decodes_and_scores_multi_reference(tmp_path, vocab_dir, monkeypatch, capsys):
    rows = _many_rows(30, seed=1)
    src = _write_table(tmp_path / "rows.tsv", rows, delimiter="\t")
    out = tmp_path / "out"
    assert _prepare(src, out, vocab_dir, "--split", "0.6,0.2,0.2") is True
    test_rows = _formatted(out, "test")
    encoded = read_encoded(out / "test.jsonl")
    groups: dict[str, list[str]] = {}
    for context, completion in test_rows:
        groups.setdefault(context, []).append(completion)
    assert any(len(refs) > 1 for refs in groups.values())  # the test split has multi-reference instances
    # fake beam output: each line "predicts" the last reference of its context (ids as beam writes them)
    last = {c: ids for (c, _), (_, ids) in zip(test_rows, encoded)}
    predict = tmp_path / "predict.jsonl"
    predict.write_text("".join(json.dumps({"id": i, "predict": list(last[c]) + [0, 0]}) + "\n"
                               for i, (c, _) in enumerate(test_rows)))
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    assert decode.main(["--vocab", str(vocab_dir), "--sample_file", str(predict), "--input_file",
                        str(out / "test_formatted.jsonl"), "--output_ref_file", str(refs),
                        "--output_pred_file", str(hyps)]) == 0
    assert refs.read_text(encoding="utf-8") == "".join("".join(r + "\n" for r in group) + "\n"
                                                       for group in groups.values())
    assert hyps.read_text(encoding="utf-8").splitlines() == [group[-1] for group in groups.values()]
    scores_file = tmp_path / "scores.json"
    measure_scores = eval_script("measure_scores")
    assert measure_scores.main([str(refs), str(hyps), "-p", "--sacrebleu", "--json", str(scores_file)]) == 0
    capsys.readouterr()
    scores = json.loads(scores_file.read_text())
    # every hypothesis is one of its references: perfect only if the references are grouped by context
    assert scores["BLEU"] == pytest.approx(1.0) and scores["sacreBLEU"] == pytest.approx(100.0)
    assert scores["chrF"] == pytest.approx(100.0) and "nrefs:var" in scores["signatures"]["sacreBLEU"]


def test_split_file_names_in_any_case(tmp_path):
    """Train.CSV is a train file as train.csv is (the extension's case never mattered either)."""
    for name in ("Train.CSV", "DEV.tsv", "TEST.jsonl", "notes.txt"):
        (tmp_path / name).write_text("", encoding="utf-8")
    assert custom_data.find_split_files(tmp_path) == {"train": tmp_path / "Train.CSV", "valid": tmp_path / "DEV.tsv",
                                                      "test": tmp_path / "TEST.jsonl"}
