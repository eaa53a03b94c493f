"""The paper report: paper values as published, unit conversion, approximations, the CLI, and the paper's
protocol: the mean over seeds, the per-epoch table and its checkpoint rules, and the three tables in one report."""

from __future__ import annotations

import json

import pytest

from gpt2_lora import paper_report as pr
from gpt2_lora import report as rep
from gpt2_lora import report_epochs as ep
from gpt2_lora import report_seeds as rs
from gpt2_lora.errors import UserError
from helpers import eval_script

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
    assert eval_script("report").main is rep.main


# ---------------------------------------------------------------------------------------------
# The paper's other rows (gpt2_lora/paper_numbers.json "baselines")
# ---------------------------------------------------------------------------------------------
def _flat_rows(rows, metrics):
    return [(r["method"], r["trainable_params"], r["prior_work"],
             *[(r["values"][m]["value"], r["values"][m]["pm"]) for m in metrics]) for r in rows]


def test_paper_baselines_are_the_published_values():
    tasks = rep.load_paper_numbers()["tasks"]
    # arXiv 2106.09685v2, Table 3 (E2E): BLEU NIST MET ROUGE-L CIDEr; * (prior work) = True
    e2e = tasks["e2e"]["baselines"]
    metrics = ("BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr")
    n = None
    assert _flat_rows(e2e["M"], metrics) == [
        ("FT", "354.92M", True, (68.2, n), (8.62, n), (46.2, n), (71.0, n), (2.47, n)),
        ("AdapterL", "0.37M", True, (66.3, n), (8.41, n), (45.0, n), (69.8, n), (2.40, n)),
        ("AdapterL", "11.09M", True, (68.9, n), (8.71, n), (46.1, n), (71.3, n), (2.47, n)),
        ("AdapterH", "11.09M", False, (67.3, .6), (8.50, .07), (46.0, .2), (70.7, .2), (2.44, .01)),
        ("FTTop2", "25.19M", True, (68.1, n), (8.59, n), (46.0, n), (70.8, n), (2.41, n)),
        ("PreLayer", "0.35M", True, (69.7, n), (8.81, n), (46.1, n), (71.4, n), (2.49, n))]
    assert _flat_rows(e2e["L"], metrics) == [
        ("FT", "774.03M", True, (68.5, n), (8.78, n), (46.0, n), (69.9, n), (2.45, n)),
        ("AdapterL", "0.88M", False, (69.1, .1), (8.68, .03), (46.3, .0), (71.4, .2), (2.49, .0)),
        ("AdapterL", "23.00M", False, (68.9, .3), (8.70, .04), (46.1, .1), (71.3, .2), (2.45, .02)),
        ("PreLayer", "0.77M", True, (70.3, n), (8.85, n), (46.2, n), (71.7, n), (2.47, n))]
    # Table 13 (DART): BLEU MET TER
    dart = tasks["dart"]["baselines"]
    assert _flat_rows(dart["M"], ("BLEU", "METEOR", "TER")) == [
        ("Fine-Tune", "354M", False, (46.2, n), (0.39, n), (0.46, n)),
        ("AdapterL", "0.37M", False, (42.4, n), (0.36, n), (0.48, n)),
        ("AdapterL", "11M", False, (45.2, n), (0.38, n), (0.46, n)),
        ("FTTop2", "24M", False, (41.0, n), (0.34, n), (0.56, n)),
        ("PrefLayer", "0.35M", False, (46.4, n), (0.38, n), (0.46, n))]
    assert _flat_rows(dart["L"], ("BLEU", "METEOR", "TER")) == [
        ("Fine-Tune", "774M", False, (47.0, n), (0.39, n), (0.46, n)),
        ("AdapterL", "0.88M", False, (45.7, .1), (0.38, n), (0.46, n)),
        ("AdapterL", "23M", False, (47.1, .1), (0.39, n), (0.45, n)),
        ("PrefLayer", "0.77M", False, (46.7, n), (0.38, n), (0.45, n))]
    # Table 14 (WebNLG): BLEU U S A, MET U S A, TER U S A
    web = tasks["webnlg"]["baselines"]
    flat = {size: [(r["method"], r["trainable_params"],
                    [r["values"][s][m]["value"] for m in ("BLEU", "METEOR", "TER") for s in ("unseen", "seen", "all")])
                   for r in web[size]] for size in ("M", "L")}
    assert flat["M"] == [
        ("Fine-Tune", "354M", [27.7, 64.2, 46.5, .30, .45, .38, .76, .33, .53]),
        ("AdapterL", "0.37M", [45.1, 54.5, 50.2, .36, .39, .38, .46, .40, .43]),
        ("AdapterL", "11M", [48.3, 60.4, 54.9, .38, .43, .41, .45, .35, .39]),
        ("FTTop2", "24M", [18.9, 53.6, 36.0, .23, .38, .31, .99, .49, .72]),
        ("Prefix", "0.35M", [45.6, 62.9, 55.1, .38, .44, .41, .49, .35, .40])]
    assert flat["L"] == [
        ("Fine-Tune", "774M", [43.1, 65.3, 55.5, .38, .46, .42, .53, .33, .42]),
        ("AdapterL", "0.88M", [49.8, 61.1, 56.0, .38, .43, .41, .44, .35, .39]),
        ("AdapterL", "23M", [49.2, 64.7, 57.7, .39, .46, .43, .46, .33, .39]),
        ("Prefix", "0.77M", [47.7, 63.4, 56.3, .39, .45, .42, .48, .34, .40])]
    pm = [[web["L"][i]["values"][s]["BLEU"]["pm"] for s in ("unseen", "seen", "all")] for i in (1, 2)]
    assert pm == [[.0, .0, .0], [.1, .2, .1]]
    assert {v["pm"] for r in web["M"] for s in r["values"].values() for v in s.values()} == {None}
    assert "verified_baselines" in rep.load_paper_numbers()["paper"]


# ---------------------------------------------------------------------------------------------
# Seeds: aggregate_reports
# ---------------------------------------------------------------------------------------------
def _e2e(bleu, nist=8.85, meteor=0.468, rouge=0.718, cider=2.53):
    return {"BLEU": bleu, "NIST": nist, "METEOR": meteor, "ROUGE_L": rouge, "CIDEr": cider, "approximate": []}


def _e2e_report(bleu, card="gpt2.md", decoding="beam 10, length penalty 0.9", **scores):
    parsed = rep.parse_scores(_e2e(bleu, **scores), _e2e_numbers(), "s.json")
    meta = {"decoding": decoding, "lora": "r=4, alpha=32", "checkpoint": f"c{bleu}"}
    return rep.build_report("e2e", {None: parsed}, card, meta=meta, sources={"scores": f"{bleu}.json"})


def _web_report(bleus, card="gpt2.md"):
    numbers = rep.load_paper_numbers()["tasks"]["webnlg"]
    scores = {split: rep.parse_scores({"bleu": b, "meteor": 0.40, "ter": 0.40}, numbers, split)
              for split, b in bleus.items()}
    return rep.build_report("webnlg", scores, card, meta={"decoding": "beam 10"})


def test_aggregate_gives_the_mean_the_sample_std_and_each_seed_in_order():
    reports = [_e2e_report(0.72, nist=9.3), _e2e_report(0.70, nist=8.8), _e2e_report(0.71, nist=8.9)]
    agg = rs.aggregate_reports(reports, [112, 110, 111])
    bleu, nist = _row(agg, "BLEU"), _row(agg, "NIST")
    assert agg["seeds"] == [112, 110, 111] and [run["seed"] for run in agg["runs"]] == [112, 110, 111]
    assert bleu["ours_runs"] == pytest.approx([72.0, 70.0, 71.0])  # the order of "seeds", not sorted
    assert bleu["ours"] == pytest.approx(71.0) and bleu["ours_std"] == pytest.approx(1.0)  # ddof=1
    assert bleu["difference"] == pytest.approx(0.6) and bleu["ours_as_scored"] == pytest.approx(0.71)
    assert nist["ours"] == pytest.approx(9.0) and nist["ours_std"] == pytest.approx(0.07 ** 0.5)
    # what all runs share stays in meta; what differs moves to each run
    assert agg["meta"] == {"decoding": "beam 10, length penalty 0.9", "lora": "r=4, alpha=32"}
    assert agg["runs"][0]["meta"] == {"checkpoint": "c0.72"} and agg["runs"][1]["sources"] == {"scores": "0.7.json"}
    md = rep.render_markdown(agg)
    assert "| BLEU | 71.00 ± 1.00 (3 runs) | 70.4 ± 0.1 | +0.60 |" in md
    assert "| metric | seed 112 | seed 110 | seed 111 |" in md and "| BLEU | 72.00 | 70.00 | 71.00 |" in md
    assert "sample standard deviation (n − 1) over 3 runs (seeds 112, 110, 111)" in md


def test_aggregate_of_a_single_run_has_a_null_std():
    agg = rs.aggregate_reports([_e2e_report(0.7043)], [110])
    bleu = _row(agg, "BLEU")
    assert bleu["ours"] == pytest.approx(70.43) and bleu["ours_std"] is None and bleu["ours_runs"] == [
        pytest.approx(70.43)]
    assert "| BLEU | 70.43 (1 run) | 70.4 ± 0.1 | +0.03 |" in rep.render_markdown(agg)
    assert json.loads(json.dumps(agg))["rows"][0]["ours_std"] is None  # null in report.json


def test_aggregate_without_a_metric_in_one_run_gives_no_mean_for_it():
    agg = rs.aggregate_reports([_e2e_report(0.70), _e2e_report(0.71, meteor=None)], [1, 2])
    meteor = _row(agg, "METEOR")
    assert meteor["ours"] is None and meteor["ours_std"] is None and meteor["ours_runs"] == [pytest.approx(46.8), None]
    assert any(note.startswith("METEOR: not computed in the run(s) of seed 2") for note in agg["notes"])
    assert "| METEOR | n/a | 46.8 ± 0.2 | n/a |" in rep.render_markdown(agg)


@pytest.mark.parametrize("other, seeds, message", [
    (lambda: _e2e_report(0.71), [110, 110], "seed 110 is given twice"),
    (lambda: _e2e_report(0.71), [110], "names 1 seed for 2 reports"),
    (lambda: _e2e_report(0.71, card="gpt2.lg"), [110, 111], "model card 'gpt2.lg' differs from run 1's 'gpt2.md'"),
    (lambda: _e2e_report(0.71, decoding="beam 5"), [110, 111], "decoding 'beam 5' differs"),
    (lambda: _web_report({"all": 55.0}), [110, 111], "task 'webnlg' differs from run 1's 'e2e'"),
    (lambda: rs.aggregate_reports([_e2e_report(0.7)], [1]), [110, 111], "is already an aggregate"),
])
def test_aggregate_refuses_runs_that_do_not_belong_together(other, seeds, message):
    with pytest.raises(UserError, match=message) as info:
        rs.aggregate_reports([_e2e_report(0.70), other()], seeds)
    assert "\n" not in str(info.value)


def test_aggregate_refuses_other_rows_and_metrics():
    with pytest.raises(UserError, match=r"run 2 \(seed 2\): its rows .* differ"):
        rs.aggregate_reports([_web_report({"all": 55.0}), _web_report({"all": 55.0, "seen": 62.0})], [1, 2])
    fewer = _e2e_report(0.71)
    fewer["rows"] = fewer["rows"][:-1]  # no CIDEr
    with pytest.raises(UserError, match="its rows"):
        rs.aggregate_reports([_e2e_report(0.70), fewer], [1, 2])


def test_cli_aggregate_writes_the_mean_and_refuses_a_repeated_seed(tmp_path, capsys):
    paths = []
    for seed, bleu in ((110, 0.70), (111, 0.72)):
        rep.write_report(_e2e_report(bleu), tmp_path / str(seed))
        paths.append(str(tmp_path / str(seed) / "report.json"))
    out = tmp_path / "mean"
    assert rep.main(["aggregate", "--seeds", "110,111", "--out_dir", str(out), *paths]) == 0
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["seeds"] == [110, 111] and _row(data, "BLEU")["ours"] == pytest.approx(71.0)
    assert _row(data, "BLEU")["ours_std"] == pytest.approx(2 ** 0.5)
    assert [run["sources"]["report"] for run in data["runs"]] == paths
    assert (out / "report.md").read_text(encoding="utf-8") in capsys.readouterr().out
    for seeds, reports, message in (("110,110", paths, "seed 110 is given twice"),
                                    ("110", paths, "names 1 seed for 2 report files"),
                                    ("110,x", paths, "expected integers separated by commas"),
                                    ("110,111,112", [paths[0], *paths], f"{paths[0]}: given for seeds 110 and 111")):
        with pytest.raises(SystemExit) as info:
            rep.main(["aggregate", "--seeds", seeds, "--out_dir", str(tmp_path / "bad"), *reports])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------------------
# Per-epoch evaluation: select_epoch and the epoch report
# ---------------------------------------------------------------------------------------------
def _records(bleus, losses):
    return [{"epoch": i, "step": 100 * i, "valid_loss": loss, "scores": _e2e(bleu)}
            for i, (bleu, loss) in enumerate(zip(bleus, losses), 1)]


def test_select_epoch_by_each_rule_ties_going_to_the_earlier_epoch():
    records = _records([0.69, 0.71, 0.71, 0.70], [1.3, 1.2, 1.1, 1.1])
    shuffled = [records[2], records[0], records[3], records[1]]
    for rows in (records, shuffled, ep.parse_epoch_records(shuffled, "e2e", _e2e_numbers())):
        assert ep.select_epoch(rows, "final")["epoch"] == 4
        assert ep.select_epoch(rows, "best_test")["epoch"] == 2  # epochs 2 and 3 tie on BLEU
        assert ep.select_epoch(rows, "best_valid")["epoch"] == 3  # epochs 3 and 4 tie on loss
    assert ep.epoch_picks(records) == {"final": 4, "best_valid": 3, "best_test": 2}


def test_select_epoch_webnlg_uses_bleu_on_all_categories_and_says_what_it_cannot_pick():
    numbers = rep.load_paper_numbers()["tasks"]["webnlg"]

    def scores(seen, all_):
        return {"seen": {"bleu": seen, "meteor": .4, "ter": .4}, "all": {"bleu": all_, "meteor": .4, "ter": .4}}
    rows = ep.parse_epoch_records([{"epoch": 1, "step": 10, "valid_loss": None, "scores": scores(64.0, 54.0)},
                                   {"epoch": 2, "step": 20, "valid_loss": None, "scores": scores(62.0, 56.0)}],
                                  "webnlg", numbers)
    assert ep.select_epoch(rows, "best_test")["epoch"] == 2
    assert ep.epoch_picks(rows) == {"final": 2, "best_valid": None, "best_test": 2}
    with pytest.raises(UserError, match="best_valid: no epoch record has a valid_loss"):
        ep.select_epoch(rows, "best_valid")
    with pytest.raises(UserError, match="--select best: expected one of final, best_valid, best_test"):
        ep.select_epoch(rows, "best")


def test_epoch_report_headline_is_the_selected_epoch_and_the_table_shows_every_epoch():
    records = _records([0.69, 0.712, 0.70], [1.30, 1.20, 1.25])
    final = ep.build_epoch_report("e2e", records, "gpt2.md")
    assert final["selection"] == {"rule": "final", "epoch": 3, "step": 300,
                                  "picks": {"final": 3, "best_valid": 2, "best_test": 2}}
    assert _row(final, "BLEU")["ours"] == pytest.approx(70.0)
    best = ep.build_epoch_report("e2e", records, "gpt2.md", select="best_test")
    assert _row(best, "BLEU")["ours"] == pytest.approx(71.2) and best["selection"]["epoch"] == 2
    assert [row["epoch"] for row in best["epochs"]] == [1, 2, 3]
    assert best["epochs"][0]["values"][0] == {"metric": "BLEU", "split": None, "value": pytest.approx(69.0)}
    md = rep.render_markdown(best)
    assert "Headline: epoch 2 (step 200), by rule `best_test` (the paper's rule: the best test BLEU)." in md
    assert ("The final checkpoint is epoch 3; the paper's rule (best test BLEU) picks epoch 2; the validation "
            "loss picks epoch 2.") in md
    assert "| 2 | 200 | 1.2000 | 71.20 | 8.850 | 46.80 | 71.80 | 2.530 | best_valid, **best_test** |" in md
    assert "| 3 | 300 | 1.2500 | 70.00 | 8.850 | 46.80 | 71.80 | 2.530 | final |" in md
    assert ep.reselect(final, "best_test")["rows"] == best["rows"]  # from the stored table


@pytest.mark.parametrize("change, message", [
    (lambda r: r[1].update(epoch=1), "epoch 1 is given twice"),
    (lambda r: r[1].update(step=100), "epoch 2 is at step 100, not after epoch 1's step 100"),
    (lambda r: r[1].update(valid_loss="low"), "record 2: 'valid_loss' must be a number or null"),
    (lambda r: r[0].update(epoch=0), "record 1: 'epoch' must be an integer >= 1"),
    (lambda r: r[1]["scores"].pop("NIST"), r"record 2 \(epoch 2\) scores: no 'NIST' score"),
])
def test_bad_epoch_records_are_one_line_naming_the_record(change, message):
    records = _records([0.69, 0.70], [1.3, 1.2])
    change(records)
    with pytest.raises(UserError, match=message) as info:
        ep.parse_epoch_records(records, "e2e", _e2e_numbers(), where="epochs.json")
    assert str(info.value).startswith("epochs.json") and "\n" not in str(info.value)


def test_cli_epochs_reads_scores_files_next_to_the_records(tmp_path, capsys):
    (tmp_path / "s1.json").write_text(json.dumps(_e2e(0.69)), encoding="utf-8")
    records = [{"epoch": 1, "step": 10, "valid_loss": 1.2, "scores": "s1.json"},
               {"epoch": 2, "step": 20, "valid_loss": 1.3, "scores": _e2e(0.70)}]
    epochs = _json(tmp_path / "epochs.json", records)
    out = tmp_path / "out"
    assert rep.main(["--task", "e2e", "--epochs", epochs, "--select", "best_valid", "--out_dir", str(out)]) == 0
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["selection"]["epoch"] == 1 and _row(data, "BLEU")["ours"] == pytest.approx(69.0)
    assert data["sources"] == {"epochs": epochs}
    capsys.readouterr()
    for argv, message in ((["--scores", epochs, "--epochs", epochs], "leave out --scores"),
                          (["--scores", str(tmp_path / "s1.json"), "--select", "best_test"], "--select picks an epoch"),
                          (["--epochs", epochs, "--select", "best"], "argument --select: invalid choice")):
        with pytest.raises(SystemExit) as info:
            rep.main(["--task", "e2e", *argv, "--out_dir", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "bad").exists()


def test_seeds_select_per_seed_then_aggregate(tmp_path, capsys):
    # seed 1's best test BLEU is at epoch 2, seed 2's at epoch 1; the final epoch is 3 for both
    runs = {1: _records([0.69, 0.71, 0.70], [1.3, 1.2, 1.1]), 2: _records([0.72, 0.69, 0.70], [1.3, 1.2, 1.1])}
    reports = [ep.build_epoch_report("e2e", records, "gpt2.md", select="best_test") for records in runs.values()]
    agg = rs.aggregate_reports(reports, [1, 2])
    assert agg["selection"] == {"rule": "best_test", "epochs": [2, 1]}
    assert _row(agg, "BLEU")["ours_runs"] == pytest.approx([71.0, 72.0])
    md = rep.render_markdown(agg)
    assert "Checkpoints, picked per seed by `best_test`: seed 1: epoch 2, seed 2: epoch 1." in md
    assert "### seed 2" in md and "| 1 | 100 | 1.3000 | 72.00 |" in md
    finals = [ep.build_epoch_report("e2e", records, "gpt2.md") for records in runs.values()]
    with pytest.raises(UserError, match="checkpoint rule 'final' differs from run 1's 'best_test'"):
        rs.aggregate_reports([reports[0], finals[1]], [1, 2])
    # the CLI re-picks each seed's epoch from its table first
    paths = []
    for seed, report in zip(runs, finals):
        rep.write_report(report, tmp_path / str(seed))
        paths.append(str(tmp_path / str(seed) / "report.json"))
    assert rep.main(["aggregate", "--seeds", "1,2", "--select", "best_test", "--out_dir", str(tmp_path / "m"),
                     *paths]) == 0
    data = json.loads((tmp_path / "m" / "report.json").read_text(encoding="utf-8"))
    assert data["rows"] == agg["rows"] and data["selection"] == agg["selection"]
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------
# The three tables: paper_report
# ---------------------------------------------------------------------------------------------
def test_paper_report_layout_for_two_tasks_and_two_seeds(tmp_path):
    e2e = rs.aggregate_reports([_e2e_report(0.70, nist=8.80), _e2e_report(0.72, nist=8.90)], [110, 111])
    web = rs.aggregate_reports([_web_report({"unseen": 46.0, "seen": 62.0, "all": 55.0}, card="gpt2.lg"),
                                _web_report({"unseen": 48.0, "seen": 63.0, "all": 56.0}, card="gpt2.lg")],
                               [110, 111])
    md_path, json_path = pr.paper_report([web, e2e], tmp_path)
    assert (md_path.name, json_path.name) == ("paper_report.md", "paper_report.json")
    md = md_path.read_text(encoding="utf-8")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    # the paper's order (Table 3 before 14); no DART table without a DART run
    assert [t["table"] for t in data["tables"]] == ["Table 3", "Table 14"]
    assert md.index("## Table 3: E2E NLG Challenge") < md.index("## Table 14: WebNLG 2017") and "Table 13" not in md
    e2e_table, web_table = data["tables"]
    assert [b["size"] for b in e2e_table["blocks"]] == ["M", "L"]
    m_rows = e2e_table["blocks"][0]["rows"]
    assert [(r["kind"], r["label"]) for r in m_rows] == [
        ("paper", "FT"), ("paper", "AdapterL"), ("paper", "AdapterL"), ("paper", "AdapterH"), ("paper", "FTTop2"),
        ("paper", "PreLayer"), ("paper_lora", "LoRA"), ("ours", "ours")]
    ours = m_rows[-1]
    assert ours["seeds"] == [110, 111] and ours["n_runs"] == 2 and ours["decoding"] == "beam 10, length penalty 0.9"
    assert ours["lora"] == "r=4, alpha=32" and ours["checkpoint_rule"] is None
    assert ours["cells"]["BLEU"] == {"value": pytest.approx(71.0), "std": pytest.approx(2 ** 0.5),
                                     "runs": [pytest.approx(70.0), pytest.approx(72.0)], "approximate": False}
    assert m_rows[0]["cells"]["NIST"] == {"value": 8.62, "pm": None} and m_rows[0]["prior_work"]
    assert m_rows[-2]["cells"]["BLEU"] == {"value": 70.4, "pm": 0.1}
    assert [r["kind"] for r in e2e_table["blocks"][1]["rows"]][-1] == "paper_lora"  # no GPT-2 L run of E2E
    assert [c["id"] for c in web_table["columns"]] == [
        "BLEU U", "BLEU S", "BLEU A", "METEOR U", "METEOR S", "METEOR A", "TER U", "TER S", "TER A"]
    web_l = web_table["blocks"][1]["rows"]
    assert web_l[-1]["cells"]["BLEU U"]["value"] == pytest.approx(47.0)
    assert web_l[-1]["cells"]["TER A"] == {"value": pytest.approx(0.4), "std": 0.0,
                                           "runs": [0.4, 0.4], "approximate": False}
    assert web_l[-2]["cells"]["BLEU U"] == {"value": 48.4, "pm": 0.3}
    # markdown rows as the paper lays them out, ours right below the paper's LoRA row
    assert "| FT* | 354.92M | 68.2 | 8.62 | 46.2 | 71.0 | 2.47 |" in md
    assert ("| LoRA (paper) | 0.35M | 70.4 ± 0.1 | 8.85 ± 0.02 | 46.8 ± 0.2 | 71.8 ± 0.1 | 2.53 ± 0.02 |\n"
            "| **ours** (`gpt2.md`, 2 runs) | r=4, alpha=32 | 71.00 ± 1.41 | 8.850 ± 0.071 | 46.80 ± 0.00 | 71.80 ± 0.00 | "
            "2.530 ± 0.000 |\n| **GPT-2 L** |") in md
    assert "| AdapterL | 0.88M | 69.1 ± 0.1 | 8.68 ± 0.03 | 46.3 ± 0.0 | 71.4 ± 0.2 | 2.49 ± 0.0 |" in md
    assert "| method | # trainable parameters | BLEU U | BLEU S | BLEU A | METEOR U |" in md
    assert ("| **ours** (`gpt2.lg`, 2 runs) |  | 47.00 ± 1.41 | 62.50 ± 0.71 | 55.50 ± 0.71 | 0.400 ± 0.000 |"
            in md)
    assert "- E2E NLG Challenge, GPT-2 M: `gpt2.md`, seeds 110, 111; checkpoint: as scored;" in md
    assert "E2E NLG Challenge: no run of ours for GPT-2 L." in data["notes"]


def test_paper_report_refuses_two_runs_of_one_task_and_size(tmp_path, capsys):
    with pytest.raises(UserError, match="a second e2e run for the paper's GPT-2 M row"):
        pr.build_paper_report([_e2e_report(0.70), _e2e_report(0.71)])
    paths = []
    for name in ("a", "b"):
        rep.write_report(_e2e_report(0.70), tmp_path / name)
        paths.append(str(tmp_path / name / "report.json"))
    with pytest.raises(SystemExit) as info:
        rep.main(["paper", "--out_dir", str(tmp_path / "p"), *paths])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith(f"error: {paths[1]}: a second e2e run") and "\n" not in err
    assert rep.main(["paper", "--out_dir", str(tmp_path / "p"), paths[0]]) == 0
    assert (tmp_path / "p" / "paper_report.md").read_text(encoding="utf-8") in capsys.readouterr().out
    assert json.loads((tmp_path / "p" / "paper_report.json").read_text())["tables"][0]["task"] == "e2e"


def test_cli_bad_flags_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        rep.main(["--task", "nope", "--out_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: argument --task: invalid choice") and "\n" not in err
    with pytest.raises(SystemExit) as info:
        rep.main(["paper", str(tmp_path / "missing.json"), "--out_dir", str(tmp_path / "p")])
    assert info.value.code == 2 and "report file not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Your own data: no paper column
# ---------------------------------------------------------------------------------------------
def _own_scores(bleu=0.5, chrf=61.0):
    return {**_e2e(bleu), "sacreBLEU": bleu * 100 - 1, "chrF": chrf,
            "signatures": {"sacreBLEU": "nrefs:var|tok:13a", "chrF": "nrefs:var|nc:6"}}


def test_own_data_report_has_no_paper_column_and_says_why(tmp_path):
    path = _json(tmp_path / "s.json", _own_scores())
    assert rep.main(["--task", "custom", "--scores", path, "--out_dir", str(tmp_path / "o")]) == 0
    report = rep.load_report(tmp_path / "o" / "report.json")
    assert report["paper"] is None and report["task"] == "custom"
    assert [r["metric"] for r in report["rows"]] == ["BLEU", "NIST", "METEOR", "ROUGE-L", "CIDEr", "sacreBLEU", "chrF"]
    assert all(r["paper"] is None and r["difference"] is None for r in report["rows"])
    assert _row(report, "BLEU")["ours"] == pytest.approx(50.0) and _row(report, "chrF")["ours"] == 61.0
    assert _row(report, "sacreBLEU")["signature"] == "nrefs:var|tok:13a"
    assert "no numbers for your data" in report["notes"][0]
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| metric | ours |" in md and "| BLEU | 50.00 |" in md and "difference" not in md
    # a scores file without --sacrebleu is one line naming it
    plain = _json(tmp_path / "plain.json", _e2e(0.5))
    with pytest.raises(SystemExit):
        rep.main(["--task", "custom", "--scores", plain, "--out_dir", str(tmp_path / "p")])


def test_own_data_reports_average_over_seeds_but_have_no_place_in_the_paper_tables():
    numbers = rep.task_numbers(rep.load_paper_numbers(), "custom")
    reports = [rep.build_report("custom", {None: rep.parse_scores(_own_scores(b, c), numbers, "s")}, "gpt2.md",
                                meta={"decoding": "beam 10"}) for b, c in ((0.5, 60.0), (0.6, 64.0))]
    agg = rs.aggregate_reports(reports, [1, 2])
    chrf = _row(agg, "chrF")
    assert chrf["ours"] == pytest.approx(62.0) and chrf["ours_std"] == pytest.approx(8 ** 0.5)
    assert chrf["difference"] is None and "(2 runs)" in rep.render_markdown(agg)
    with pytest.raises(UserError, match="a report on your own data \\(task custom\\): the paper's tables have no"):
        pr.build_paper_report([agg])
    broken = {**reports[0], "task": "e2e"}  # only your own data may lack the paper
    with pytest.raises(UserError, match="'paper' is missing or not a dict"):
        rep.check_report(broken, "r")


def test_a_mistyped_subcommand_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        rep.main(["agregate", "--seeds", "1", "--out_dir", str(tmp_path), "r.json"])
    assert info.value.code == 2 and capsys.readouterr().err == (
        "error: unknown subcommand 'agregate': expected aggregate or paper, or the flags of one run's report "
        "(see --help)\n")
