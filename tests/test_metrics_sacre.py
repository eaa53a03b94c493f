"""gpt2_lora.metrics.sacre and measure_scores --sacrebleu: sacrebleu's own corpus scores, signatures,
ragged reference counts."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from gpt2_lora.errors import UserError
from gpt2_lora.metrics.sacre import reference_streams, sacrebleu_scores
from helpers import eval_script

# three instances with 2, 1 and 3 references
REFS = [["the cat sat on the mat .", "a cat was sitting on the mat ."],
        ["it is raining in Paris today ."],
        ["Blue Spice is a cheap pub .", "Blue Spice , a pub , is cheap .", "The pub Blue Spice has low prices ."]]
HYPS = ["the cat is on the mat .", "it rains in Paris today .", "Blue Spice is a pub with low prices ."]


def test_equals_sacrebleu_on_ragged_references():
    result = sacrebleu_scores(REFS, HYPS)
    # sacrebleu's convention written out by hand: stream k = every instance's k-th reference, None if absent
    streams = [["the cat sat on the mat .", "it is raining in Paris today .", "Blue Spice is a cheap pub ."],
               ["a cat was sitting on the mat .", None, "Blue Spice , a pub , is cheap ."],
               [None, None, "The pub Blue Spice has low prices ."]]
    assert reference_streams(REFS) == streams
    assert result["sacreBLEU"] == sacrebleu.corpus_bleu(HYPS, streams).score
    assert result["chrF"] == sacrebleu.corpus_chrf(HYPS, streams).score
    assert 0 < result["sacreBLEU"] < 100 and 0 < result["chrF"] < 100
    # dropping the ragged references changes the score: all of them are used
    assert result["sacreBLEU"] != sacrebleu.corpus_bleu(HYPS, streams[:1]).score


def test_signatures():
    ragged = sacrebleu_scores(REFS, HYPS)["signatures"]
    version = f"version:{sacrebleu.__version__}"
    assert ragged["sacreBLEU"].startswith("nrefs:var|") and "tok:13a" in ragged["sacreBLEU"]
    assert ragged["chrF"].startswith("nrefs:var|") and version in ragged["chrF"] and version in ragged["sacreBLEU"]
    uniform = sacrebleu_scores([group[:1] for group in REFS], HYPS)["signatures"]
    assert uniform["sacreBLEU"].startswith("nrefs:1|") and uniform["chrF"].startswith("nrefs:1|")


def test_identical_hypotheses_score_100_and_order_within_a_group_does_not_matter():
    assert sacrebleu_scores(REFS, [group[-1] for group in REFS])["sacreBLEU"] == pytest.approx(100.0)
    shuffled = [list(reversed(group)) for group in REFS]
    assert sacrebleu_scores(shuffled, HYPS)["sacreBLEU"] == pytest.approx(sacrebleu_scores(REFS, HYPS)["sacreBLEU"])


@pytest.mark.parametrize("refs, hyps, message", [
    (REFS, HYPS[:2], "3 reference groups but 2 hypotheses"),
    ([["a"], []], ["a", "b"], "instance 2 has no reference"),
    ([], [], "no hypotheses"),
])
def test_bad_input(refs, hyps, message):
    with pytest.raises(UserError, match=message):
        sacrebleu_scores(refs, hyps)


def test_measure_scores_flag(tmp_path, monkeypatch, capsys):
    refs, hyps = tmp_path / "refs.txt", tmp_path / "hyps.txt"
    refs.write_text("".join("".join(r + "\n" for r in group) + "\n" for group in REFS), encoding="utf-8")
    hyps.write_text("".join(h + "\n" for h in HYPS), encoding="utf-8")
    expected = sacrebleu_scores(REFS, HYPS)
    measure_scores = eval_script("measure_scores")
    out_json = tmp_path / "scores.json"
    assert measure_scores.main([str(refs), str(hyps), "-p", "--sacrebleu", "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[7:9] == [f"sacreBLEU: {expected['sacreBLEU']:.4f} ({expected['signatures']['sacreBLEU']})",
                          f"chrF: {expected['chrF']:.4f} ({expected['signatures']['chrF']})"]
    saved = json.loads(out_json.read_text())
    assert list(saved) == ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr", "approximate", "sacreBLEU", "chrF",
                           "signatures"]
    assert {k: saved[k] for k in expected} == expected
    assert measure_scores.main([str(refs), str(hyps), "-p", "-t", "-H", "--sacrebleu"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split("\t")[-2:] == ["sacreBLEU", "chrF"] and row.split("\t")[-1] == f"{expected['chrF']:.4f}"
    assert measure_scores.main([str(refs), str(hyps), "-p", "--json", str(out_json)]) == 0  # without the flag
    assert "sacreBLEU" not in capsys.readouterr().out and "chrF" not in json.loads(out_json.read_text())
