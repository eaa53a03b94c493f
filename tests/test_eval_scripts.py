"""The eval/ scripts as CLIs (eval/measure_scores.py, eval/eval.py): their output guards. The metrics behind
them: test_metrics_e2e.py, test_metrics_generationeval.py, test_metrics_sacre.py."""

from __future__ import annotations

from helpers import eval_script, one_line_error


def test_scorers_refuse_json_over_an_input(tmp_path, capsys):
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    refs.write_text("a b c\n\nd e f\n")
    hyps.write_text("a b c\nd e f\n")
    one_line_error(eval_script("measure_scores").main, [str(refs), str(hyps), "--json", str(refs)], capsys,
                   "is the REFS file")
    assert refs.read_text() == "a b c\n\nd e f\n"
    ref0 = tmp_path / "ref0"
    ref0.write_text("a b c\n")
    one_line_error(eval_script("eval").main, ["-R", str(tmp_path / "ref"), "-H", str(hyps), "-nr", "1", "--json",
                                              str(hyps)], capsys, "is the -H file")
    one_line_error(eval_script("eval").main, ["-R", str(tmp_path / "ref"), "-H", str(hyps), "-nr", "1", "--json",
                                              str(tmp_path)], capsys, "is a directory")
    assert hyps.read_text() == "a b c\nd e f\n"
