"""The paper report: paper values as published, unit conversion, approximations, and the CLI."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import ROOT

from gpt2_lora import report as rep
from gpt2_lora.errors import UserError

E2E_SCORES = {"BLEU": 0.7043, "NIST": 8.8531, "METEOR": 0.4692, "ROUGE_L": 0.7182, "CIDEr": 2.5312}


def _json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _row(report, metric, split=None):
    (line,) = [l for l in report["rows"] if l["metric"] == metric and l["split"] == split]
    return line


# ---------------------------------------------------------------------------------------------
# gpt2_lora/paper_numbers.json
# ---------------------------------------------------------------------------------------------
def test_paper_numbers_are_the_published_values():
    tasks = rep.load_paper_numbers()["tasks"]
    # LoRA paper (arXiv 2106.09685v2), GPT-2 LoRA rows
    assert (tasks["e2e"]["table"], tasks["webnlg"]["table"], tasks["dart"]["table"]) == (
        "Table 3", "Table 14", "Table 13")
    e2e = {size: {m: (v["value"], v["pm"]) for m, v in tasks["e2e"]["rows"][size]["values"].items()}
           for size in ("M", "L")}
    assert e2e["M"] == {"BLEU": (70.4, 0.1), "NIST": (8.85, 0.02), "METEOR": (46.8, 0.2),
                        "ROUGE-L": (71.8, 0.1), "CIDEr": (2.53, 0.02)}
    assert e2e["L"] == {"BLEU": (70.4, 0.1), "NIST": (8.89, 0.02), "METEOR": (46.8, 0.2),
                        "ROUGE-L": (72.0, 0.2), "CIDEr": (2.47, 0.02)}
    web = tasks["webnlg"]["rows"]
    flat = {size: [web[size]["values"][split][m]["value"] for m in ("BLEU", "METEOR", "TER")
                   for split in ("unseen", "seen", "all")] for size in ("M", "L")}
    assert flat["M"] == [46.7, 62.1, 55.3, 0.38, 0.44, 0.41, 0.46, 0.33, 0.39]
    assert flat["L"] == [48.4, 64.0, 57.0, 0.39, 0.45, 0.42, 0.45, 0.32, 0.38]
    dart = tasks["dart"]["rows"]
    assert [dart[s]["values"][m]["value"] for s in ("M", "L") for m in ("BLEU", "METEOR", "TER")] == [
        47.1, 0.39, 0.46, 47.5, 0.39, 0.45]


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------
def _e2e_numbers():
    return rep.load_paper_numbers()["tasks"]["e2e"]


def test_e2e_fractions_are_scaled_to_the_papers_units(tmp_path):
    scores = rep.load_scores(_json(tmp_path / "s.json", E2E_SCORES), _e2e_numbers())
    report = rep.build_report("e2e", {None: scores}, "gpt2.md")
    bleu, nist, rouge = _row(report, "BLEU"), _row(report, "NIST"), _row(report, "ROUGE-L")
    assert bleu["ours"] == pytest.approx(70.43) and bleu["difference"] == pytest.approx(0.03)
    assert nist["ours"] == pytest.approx(8.8531) and nist["difference"] == pytest.approx(0.0031)
    assert rouge["ours"] == pytest.approx(71.82) and not rouge["approximate"]
    assert report["paper"]["table"] == "Table 3" and report["paper"]["row"] == "GPT-2 M (LoRA)"
    assert report["notes"] == []
    md = rep.render_markdown(report)
    assert "| BLEU | 70.43 | 70.4 ± 0.1 | +0.03 |" in md
    assert "| NIST | 8.853 | 8.85 ± 0.02 | +0.003 |" in md


def test_e2e_without_java_marks_meteor_and_approximations(tmp_path):
    no_java = {**E2E_SCORES, "METEOR": None, "approximate": ["ROUGE_L", "CIDEr"]}  # as measure_scores writes
    scores = rep.load_scores(_json(tmp_path / "s.json", no_java), _e2e_numbers())
    report = rep.build_report("e2e", {None: scores}, "gpt2.lg")
    assert report["paper"]["row"] == "GPT-2 L (LoRA)"
    meteor = _row(report, "METEOR")
    assert meteor["ours"] is None and meteor["difference"] is None
    assert [l["metric"] for l in report["rows"] if l["approximate"]] == ["ROUGE-L", "CIDEr"]
    md = rep.render_markdown(report)
    assert "| METEOR | n/a | 46.8 ± 0.2 | n/a |" in md and "(approx.)" in md
    assert any("METEOR" in note and "Java" in note for note in report["notes"])


def test_e2e_scores_file_from_before_the_approximate_list_is_read_the_old_way(tmp_path):
    scores = rep.load_scores(_json(tmp_path / "s.json", {**E2E_SCORES, "METEOR": None}), _e2e_numbers())
    report = rep.build_report("e2e", {None: scores}, "gpt2.md")
    assert [l["metric"] for l in report["rows"] if l["approximate"]] == ["ROUGE-L", "CIDEr"]
    complete = rep.load_scores(_json(tmp_path / "c.json", E2E_SCORES), _e2e_numbers())
    assert not any(l["approximate"] for l in rep.build_report("e2e", {None: complete}, "gpt2.md")["rows"])


def test_e2e_meteor_missing_but_nothing_flagged_is_not_called_approximate(tmp_path):
    # Java present but METEOR failed: ROUGE-L and CIDEr used the official tokenizer
    scores = rep.load_scores(_json(tmp_path / "s.json", {**E2E_SCORES, "METEOR": None, "approximate": []}),
                             _e2e_numbers())
    report = rep.build_report("e2e", {None: scores}, "gpt2.md")
    assert not any(l["approximate"] for l in report["rows"])
    assert "(approx.)" not in rep.render_markdown(report)
    assert [n for n in report["notes"] if "Approximate" in n] == []
    assert any(n.startswith("Not computed: METEOR") for n in report["notes"])


def test_e2e_scores_given_x100_are_refused(tmp_path):
    scores = rep.load_scores(_json(tmp_path / "s.json", {**E2E_SCORES, "BLEU": 70.43}), _e2e_numbers())
    with pytest.raises(UserError, match="not a fraction"):
        rep.build_report("e2e", {None: scores}, "gpt2.md")


def test_webnlg_splits_in_paper_order_and_small_model_note(tmp_path):
    numbers = rep.load_paper_numbers()["tasks"]["webnlg"]
    seen = rep.load_scores(_json(tmp_path / "s.json", {"bleu": 62.5, "meteor": 0.442, "ter": 0.331}), numbers)
    full = rep.load_scores(_json(tmp_path / "a.json", {"bleu": 55.0, "meteor": None, "ter": 0.39}), numbers)
    report = rep.build_report("webnlg", {"all": full, "seen": seen}, "gpt2.sm")
    assert [(l["metric"], l["split"]) for l in report["rows"]] == [
        ("BLEU", "seen"), ("BLEU", "all"), ("METEOR", "seen"), ("METEOR", "all"), ("TER", "seen"), ("TER", "all")]
    ter_seen = _row(report, "TER", "seen")
    assert ter_seen["paper"] == 0.33 and ter_seen["difference"] == pytest.approx(0.001)
    assert not ter_seen["higher_is_better"]
    assert report["paper"]["row"] == "GPT-2 M LoRA" and "no GPT-2 small" in report["notes"][0]
    md = rep.render_markdown(report)
    assert "| TER (seen) ↓ | 0.331 | 0.33 | +0.001 |" in md
    assert "| METEOR (all) | n/a | 0.41 | n/a |" in md


@pytest.mark.parametrize("data, message", [
    ({"bleu": 47.0, "meteor": 0.39}, "no 'ter' score"),
    ({"bleu": "47", "meteor": 0.39, "ter": 0.4}, "must be a number"),
    ([1, 2], "JSON object"),
])
def test_bad_scores_files(tmp_path, data, message):
    numbers = rep.load_paper_numbers()["tasks"]["dart"]
    with pytest.raises(UserError, match=message):
        rep.load_scores(_json(tmp_path / "s.json", data), numbers)


def test_model_card_names():
    assert [rep.model_size(c) for c in ("gpt2.md", "gpt2.lg", "gpt2.sm", "L", "medium")] == ["M", "L", "S", "L", "M"]
    with pytest.raises(UserError):
        rep.model_size("gpt3")


# ---------------------------------------------------------------------------------------------
# CLI (gpt2-lora-report and eval/report.py)
# ---------------------------------------------------------------------------------------------
def test_cli_writes_markdown_and_json(tmp_path, capsys):
    scores = _json(tmp_path / "dart.json", {"bleu": 47.35, "bleu_nltk": 0.46, "meteor": 0.391, "ter": 0.452})
    meta = _json(tmp_path / "meta.json", {"card": "H100", "steps": 1})
    out = tmp_path / "out"
    assert rep.main(["--task", "dart", "--scores", scores, "--model_card", "gpt2.lg", "--out_dir", str(out),
                     "--meta", meta, "--steps", "100", "--wall_clock", "3725"]) == 0
    printed = capsys.readouterr().out
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md in printed
    assert "| BLEU | 47.35 | 47.5 ± 0.1 | -0.15 |" in md and "Table 13" in md
    assert "- wall_clock_s: 1:02:05 (3725 s)" in md
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["meta"] == {"card": "H100", "steps": 100, "wall_clock_s": 3725.0}
    assert _row(data, "METEOR")["ours"] == 0.391 and data["sources"] == {"scores": scores}


@pytest.mark.parametrize("args, message", [
    (["--task", "e2e"], "needs --scores"),
    (["--task", "webnlg"], "needs at least one"),
    (["--task", "dart", "--scores_seen", "x.json"], "--scores_seen is for --task webnlg"),
    (["--task", "e2e", "--scores", "missing.json"], "scores file not found"),
])
def test_cli_errors_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        rep.main([*args, "--out_dir", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_bad_run_values_and_outputs_over_inputs(tmp_path, capsys):
    scores = _json(tmp_path / "report.json", {"bleu": 47.0, "meteor": 0.39, "ter": 0.46})
    base = ["--task", "dart", "--scores", str(scores)]
    for extra, message in ((["--out_dir", str(tmp_path)], "is the scores file"),
                           (["--out_dir", str(tmp_path / "o"), "--wall_clock", "nan"], "wall_clock_s must be"),
                           (["--out_dir", str(tmp_path / "o"), "--wall_clock", "-5"], "wall_clock_s must be")):
        with pytest.raises(SystemExit) as info:
            rep.main(base + extra)
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and message in err and "\n" not in err
    assert json.loads((tmp_path / "report.json").read_text())["bleu"] == 47.0 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("scores, message", [
    ({"bleu": 47.0, "meteor": 39.0, "ter": 0.46}, "meteor = 39.0 is outside"),
    ({"bleu": -1.0, "meteor": 0.39, "ter": 0.46}, "bleu = -1.0 is outside"),
    ({"bleu": 470.0, "meteor": 0.39, "ter": 0.46}, "bleu = 470.0 is outside"),
])
def test_dart_scores_outside_their_range_are_refused(tmp_path, scores, message):
    numbers = rep.load_paper_numbers()["tasks"]["dart"]
    loaded = rep.load_scores(_json(tmp_path / "s.json", scores), numbers)
    with pytest.raises(UserError, match=message):
        rep.build_report("dart", {None: loaded}, "gpt2.md")


def test_paper_numbers_without_the_task_is_one_line(tmp_path, capsys):
    paper = _json(tmp_path / "paper.json", {**rep.load_paper_numbers(), "tasks": {}})
    with pytest.raises(SystemExit) as info:
        rep.main(["--task", "e2e", "--scores", str(_json(tmp_path / "s.json", E2E_SCORES)),
                  "--paper_numbers", str(paper), "--out_dir", str(tmp_path / "o")])
    assert info.value.code == 2 and "no numbers for --task e2e" in capsys.readouterr().err


@pytest.mark.parametrize("body, message", [
    (b'{"BLEU": 0.7,\n "NIST": \xff}', "s.json:2: not valid UTF-8"),
    (b'{"BLEU": 0.7,\n "NIST": }', "s.json:2: scores file is not valid JSON"),
])
def test_unreadable_scores_file_is_one_line_naming_the_line(tmp_path, body, message):
    (tmp_path / "s.json").write_bytes(body)
    with pytest.raises(UserError, match=message):
        rep.load_scores(tmp_path / "s.json", _e2e_numbers())


def test_eval_report_script_is_the_same_cli():
    spec = importlib.util.spec_from_file_location("report_script", ROOT / "eval" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main is rep.main
