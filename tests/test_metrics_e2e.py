"""E2E scorer: hand-computed metric values on tiny inputs, input reading, and parity with the official
tuetschek/e2e-metrics numbers (../shared/metrics-cases/e2e, plus edge cases run through the official
scorer)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import subprocess
import sys

import pytest
from conftest import ROOT, requires_java

from gpt2_lora.errors import UserError
from gpt2_lora.metrics.cider import cider
from gpt2_lora.metrics.e2e import e2e_scores, load_data, read_multi_refs
from gpt2_lora.metrics.meteor import _add_stats
from gpt2_lora.metrics.mteval import bleu_nist, perl_tokenize, py_tokenize
from gpt2_lora.metrics.ptb_tokenizer import python_tokenize
from gpt2_lora.metrics.rouge import lcs_length, rouge_l

NIST_BETA = -math.log(0.5) / math.log(1.5) ** 2


def _measure_scores():
    """eval/measure_scores.py as a module (eval/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("measure_scores", ROOT / "eval" / "measure_scores.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# BLEU / NIST, hand-computed
# ---------------------------------------------------------------------------------------------
def test_mteval_tokenization_rules():
    # punctuation split except . , between digits; dash split after a digit; apostrophe kept
    assert perl_tokenize("It's £20-25, ok.") == ["it's", "£20", "-", "25", ",", "ok", "."]
    assert perl_tokenize("1,000.50 &amp; x") == ["1,000.50", "&", "x"]
    # Perl lower-cases ASCII only; pymteval lower-cases tokens with Unicode rules
    assert perl_tokenize("ÉCOLE") == ["École"]
    assert py_tokenize("ÉCOLE") == ["école"]
    # an empty segment: no token for Perl, one empty token for pymteval
    assert perl_tokenize("  ") == [] and py_tokenize("") == [""]
    # whitespace as Perl's \s sees it (no-break space yes, U+001C no)
    assert perl_tokenize("a\u00a0b\x1cc") == ["a", "b\x1cc"]


def test_bleu_both_routes_no_4gram_match():
    hyps, refs = ["The cat sat on the mat"], [["the cat is on the mat"]]
    # matches: 1-grams 5/6, 2-grams 3/5, 3-grams 1/4, 4-grams 0/3; equal lengths (no brevity penalty)
    perl = bleu_nist(hyps, refs, "perl")["BLEU"]
    assert perl == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1 / (2 * 3)) ** 0.25, rel=1e-12)  # 0 -> 1/2^k
    python = bleu_nist(hyps, refs, "python")["BLEU"]
    assert python == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * 1e-15 / 3) ** 0.25, rel=1e-12)  # 0 -> 1e-15


def test_empty_hypothesis():
    perl = bleu_nist([""], [["a b"]], "perl")
    assert perl == {"BLEU": 0.0, "NIST": 0.0}
    # pymteval sees one empty token: lengths 1, 0, -1, -2 (clamped to 1e-9), closest ref length 2
    python = bleu_nist([""], [["a b"]], "python")["BLEU"]
    expected = math.exp(1 - 2 / 1) * (1e-15 / 1 * (1e-15 / 1e-9) ** 3) ** 0.25
    assert python == pytest.approx(expected, rel=1e-9)


def test_nist_uneven_reference_counts_differ_between_routes():
    # every reference word is distinct: unigram information log2(16) = 4 bits, longer n-grams 0 bits
    refs = [["a b c d e f g h", "x y"], ["i j k l m n"]]
    hyps = ["a b c d e", "i j k l m"]
    raw = 40 / 10  # ten matched unigrams of 4 bits each, over ten hypothesis unigrams
    perl, python = bleu_nist(hyps, refs, "perl"), bleu_nist(hyps, refs, "python")
    # Perl: 16 reference words / (3 non-empty references / 2 segments); pymteval: 8/2 + 6/1
    assert perl["NIST"] == pytest.approx(raw * math.exp(-NIST_BETA * math.log(10 / (16 / 1.5)) ** 2))
    assert python["NIST"] == pytest.approx(raw * math.exp(-NIST_BETA * math.log(10 / 11) ** 2))
    # all n-grams match and the closest references (ties -> shorter: 2 words, and 6) are shorter
    assert perl["BLEU"] == pytest.approx(1.0) and python["BLEU"] == pytest.approx(1.0)


def test_single_reference_bleu_brevity_penalty():
    hyps, refs = ["a b c d e f"], [["a b c d e f g h i"]]  # all n-grams match, 6 vs 9 words
    for route in ("perl", "python"):
        assert bleu_nist(hyps, refs, route)["BLEU"] == pytest.approx(math.exp(1 - 9 / 6))


# ---------------------------------------------------------------------------------------------
# ROUGE-L and CIDEr, hand-computed
# ---------------------------------------------------------------------------------------------
def test_lcs_matches_dynamic_programming():
    def dp(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                table[i][j] = (table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1]
                               else max(table[i - 1][j], table[i][j - 1]))
        return table[-1][-1]

    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("abcdef") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == dp(a, b)


def test_rouge_l_max_precision_and_recall_taken_separately():
    # ref 1: LCS 3 -> P 3/4, R 3/5; ref 2: LCS 1 -> P 1/4, R 1; coco combines max P with max R
    p, r = 3 / 4, 1.0
    score, _ = rouge_l(["a b c d"], [["a c d e f", "b"]])
    assert score == pytest.approx((1 + 1.2 ** 2) * p * r / (r + 1.2 ** 2 * p))
    assert rouge_l([""], [["a b"]])[0] == 0.0


def test_cider_hand_values():
    # identical hypothesis/reference, vocabularies disjoint across 2 segments: cosine 1 for n=1..4
    assert cider(["a b c d", "e f g h"], [["a b c d"], ["e f g h"]])[0] == pytest.approx(10.0)
    # 2-word sentences have no 3-/4-grams: mean over n of (1, 1, 0, 0), times 10
    assert cider(["a b", "c d"], [["a b"], ["c d"]])[0] == pytest.approx(5.0)
    # one segment: every reference n-gram has idf log(1) - log(1) = 0
    assert cider(["a b c d"], [["a b c d"]])[0] == 0.0
    # two references: the second shares nothing -> the average over references halves the score
    assert cider(["a b c d", "e f g h"], [["a b c d", "x y z w"], ["e f g h"]])[0] == pytest.approx(7.5)


def test_meteor_stats_aggregation_skips_perfect_single_chunk():
    perfect = "3.0 3.0 1.0 1.0 " + "2.0 2.0 1.0 1.0 " + "0.0 " * 12 + "1.0 3.0 3.0"
    partial = "4.0 3.0 1.0 1.0 " + "2.0 2.0 1.0 1.0 " + "0.0 " * 12 + "2.0 3.0 3.0"
    total = [0.0] * 23
    _add_stats(total, perfect)
    _add_stats(total, partial)
    assert total[0] == 7.0 and total[4] == 4.0 and total[21] == 6.0
    assert total[20] == 2.0  # the jar's addStats drops the chunk of a complete one-chunk match


# ---------------------------------------------------------------------------------------------
# The Python PTB tokenizer (the route without Java; tests/test_ptb_tokenizer.py compares it with the jar)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("Blue Spice is a coffee shop, less than £20.", "blue spice is a coffee shop less than # 20"),
    ("It's cheap (really) -- isn't it?", "it 's cheap -lrb- really -rrb- is n't it"),
    ("Mr. Smith's 5-star place; 20-25 yes!", "mr. smith 's 5-star place 20-25 yes"),
    ('"Quoted" text ... end', "quoted text end"),
])
def test_python_ptb_tokenizer(text, expected):
    assert python_tokenize(text) == expected


# ---------------------------------------------------------------------------------------------
# Reading inputs
# ---------------------------------------------------------------------------------------------
def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_read_multi_and_single_reference_files(tmp_path):
    multi = _write(tmp_path / "multi.txt", "a 1\na 2\n\nb 1\n\nc 1\nc 2\nc 3\n")
    assert read_multi_refs(multi) == [["a 1", "a 2"], ["b 1"], ["c 1", "c 2", "c 3"]]
    single = _write(tmp_path / "single.txt", "x\ny\n")
    assert read_multi_refs(single) == [["x"], ["y"]]


def test_read_csv_grouped_by_mr(tmp_path):
    refs = _write(tmp_path / "refs.csv", 'mr,ref\n"n[A], t[pub]",A one\n"n[A], t[pub]",A two\n'
                                        'n[B],B one\n')
    hyps = _write(tmp_path / "hyps.txt", "out a\nout b\n")
    srcs, grouped, outs = load_data(refs, hyps)
    assert grouped == [["A one", "A two"], ["B one"]] and outs == ["out a", "out b"]
    # outputs with MRs: references are looked up by MR, in the outputs' order; TSV, header-less
    hyps_tsv = _write(tmp_path / "hyps.tsv", "n[B]\tb text\nn[A], t[pub]\ta text\n")
    srcs, grouped, outs = load_data(refs, hyps_tsv)
    assert grouped == [["B one"], ["A one", "A two"]] and outs == ["b text", "a text"]


@pytest.mark.parametrize("refs_text, hyps_text, message", [
    ("a\n\nb\n", "x\n", "has 2 instances but"),
    ("a\n\nb\n", "", "file is empty"),
    ("", "x\n", "file is empty"),
    ("a\n\n\nb\n", "x\ny\n", ":3: blank line"),
    ("a\n\nb\n", b"x\n\xff\n", ":2: not valid UTF-8"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, refs_text, hyps_text, message):
    refs = _write(tmp_path / "refs.txt", refs_text)
    hyps = _write(tmp_path / "hyps.txt", hyps_text)
    with pytest.raises(UserError, match=message) as info:
        load_data(refs, hyps)
    assert "\n" not in str(info.value)


def test_missing_file_is_one_line_error(tmp_path):
    hyps = _write(tmp_path / "hyps.txt", "x\n")
    with pytest.raises(UserError, match="references file not found"):
        load_data(tmp_path / "nope.txt", hyps)


# ---------------------------------------------------------------------------------------------
# Without Java: every metric computed in Python, nothing approximate
# ---------------------------------------------------------------------------------------------
def _without_java(monkeypatch):
    from gpt2_lora.metrics import java

    monkeypatch.setattr(java, "find_java", lambda: None)


def test_without_java_every_metric_is_computed_in_python(metrics_cases, monkeypatch):
    _without_java(monkeypatch)
    case = metrics_cases / "e2e" / "example-inputs"
    expected = json.loads((case / "expected.json").read_text())["scores"]["full_precision"]
    _, refs, hyps = load_data(case / "devel-conc.txt", case / "baseline-output.txt")
    result = e2e_scores(refs, hyps, route="python", log=lambda _: None)
    assert result.approximate == () and result.notes == []
    assert result.scores["BLEU"] == pytest.approx(expected["BLEU_pymteval"], abs=1e-12)
    assert result.scores["NIST"] == pytest.approx(expected["NIST_pymteval"], abs=1e-12)
    for metric in ("METEOR", "ROUGE_L", "CIDEr"):
        assert abs(result.scores[metric] - expected[metric]) <= TOL[metric], metric
    # use_java=False asks for the same
    assert e2e_scores(refs, hyps, route="python", use_java=False).scores == result.scores


def test_cli_without_java(metrics_cases, monkeypatch, capsys, tmp_path):
    measure_scores = _measure_scores()

    _without_java(monkeypatch)
    case = metrics_cases / "e2e" / "example-inputs"
    printed = json.loads((case / "expected.json").read_text())["scores"]["printed_default(perl)"]
    out_json = tmp_path / "scores.json"
    assert measure_scores.main([str(case / "devel-conc.txt"), str(case / "baseline-output.txt"),
                                "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["SCORES:", "=============="] + [
        f"{m}: {printed[m]:.4f}" for m in ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")] + [""]
    data = json.loads(out_json.read_text())
    assert list(data) == ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr", "approximate"]
    assert data["approximate"] == [] and data["METEOR"] == pytest.approx(0.4800716745732023, abs=1e-12)


def _run_without_java_on_path(tmp_path, *args):
    """eval/measure_scores.py in a child process whose PATH holds no java (and no JAVA_HOME)."""
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    (tmp_path / "bin").mkdir(exist_ok=True)
    env.update(PATH=str(tmp_path / "bin"), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "eval" / "measure_scores.py"), *map(str, args)],
                          env=env, capture_output=True, text=True)


def test_cli_with_no_java_on_path_takes_the_python_route(metrics_cases, tmp_path):
    case = metrics_cases / "e2e" / "example-inputs"
    data = json.loads((case / "expected.json").read_text())["scores"]
    out_json = tmp_path / "scores.json"
    proc = _run_without_java_on_path(tmp_path, "-p", case / "devel-conc.txt", case / "baseline-output.txt",
                                     "--json", out_json)
    assert proc.returncode == 0, proc.stderr
    assert "METEOR (Python)" in proc.stderr and "PTB tokenizer (Python)" in proc.stderr
    assert proc.stdout.splitlines()[2:7] == [f"{m}: {v:.4f}" for m, v in data["printed_-p(pymteval)"].items()]
    written = json.loads(out_json.read_text())
    assert written["approximate"] == []
    for metric in ("METEOR", "ROUGE_L", "CIDEr"):
        assert abs(written[metric] - data["full_precision"][metric]) <= TOL[metric], metric
    # the jar asked for by name, with no Java: one line, exit status 2
    proc = _run_without_java_on_path(tmp_path, "--meteor", "jar", case / "devel-conc.txt",
                                     case / "baseline-output.txt")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: METEOR unavailable")


def test_cli_bad_input_exits_2(tmp_path, capsys):
    measure_scores = _measure_scores()

    refs = _write(tmp_path / "refs.txt", "a\n\nb\n")
    with pytest.raises(SystemExit) as info:
        measure_scores.main([str(refs), str(tmp_path / "missing.txt")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: hypotheses file not found")
    with pytest.raises(SystemExit) as info:
        measure_scores.main(["--meteor", "perl", str(refs), str(refs)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: argument --meteor: invalid choice") and "\n" not in err
    for argv, message in (([str(refs)], "the following arguments are required: sys_file"),
                          ([str(refs), str(refs), "--sacrebleau"], "unrecognized arguments: --sacrebleau")):
        with pytest.raises(SystemExit) as info:  # bad flags: one line as well, no usage block
            measure_scores.main(argv)
        assert info.value.code == 2 and capsys.readouterr().err == f"error: {message} (see --help)\n"


# ---------------------------------------------------------------------------------------------
# With Java: parity with the official scorer
# ---------------------------------------------------------------------------------------------
# BLEU/NIST of e2e-metrics' default (Perl) route at full precision: mteval-v13a-sig.pl with its final
# printf widened to %.12f (expected.json keeps the printed 4 decimals only).
PERL_FULL = {
    "example": (0.720292849432, 7.821151927456),
    "tgen": (0.659271932782, 8.609377620337),
    "sheff1": (0.60151269014, 8.307486251996),
    "dangnt": (0.598953086892, 7.927747965807),
}
TOL = {"BLEU": 1e-4, "METEOR": 1e-4, "ROUGE_L": 1e-4, "NIST": 1e-3, "CIDEr": 1e-3}


@pytest.fixture(scope="module")
def jvm():
    """One METEOR JVM and one PTB tokenizer (with its cache) for the whole module."""
    from gpt2_lora.metrics.meteor import Meteor
    from gpt2_lora.metrics.ptb_tokenizer import PTBTokenizer

    with Meteor("coco") as meteor:
        yield meteor, PTBTokenizer()


def _score(jvm, refs, hyps):
    """Both routes: the jar metrics are route-independent, so compute them once."""
    meteor, tokenizer = jvm
    result = e2e_scores(refs, hyps, route="perl", meteor=meteor, tokenizer=tokenizer, log=lambda _: None)
    assert result.approximate == () and result.notes == []
    python = bleu_nist(hyps, refs, "python")
    return result.scores, python


def _check(name, scores, python, full):
    perl_bleu, perl_nist = PERL_FULL[name]
    assert abs(scores["BLEU"] - perl_bleu) <= TOL["BLEU"]
    assert abs(scores["NIST"] - perl_nist) <= TOL["NIST"]
    assert abs(python["BLEU"] - full["BLEU_pymteval"]) <= TOL["BLEU"]
    assert abs(python["NIST"] - full["NIST_pymteval"]) <= TOL["NIST"]
    for metric in ("METEOR", "ROUGE_L", "CIDEr"):
        assert abs(scores[metric] - full[metric]) <= TOL[metric], metric


@requires_java
def test_example_inputs_match_official(jvm, metrics_cases):
    case = metrics_cases / "e2e" / "example-inputs"
    data = json.loads((case / "expected.json").read_text())["scores"]
    _, refs, hyps = load_data(case / "devel-conc.txt", case / "baseline-output.txt")
    scores, python = _score(jvm, refs, hyps)
    _check("example", scores, python, data["full_precision"])
    for metric, printed in data["printed_default(perl)"].items():
        assert "%.4f" % scores[metric] == "%.4f" % printed
    assert "%.4f" % python["NIST"] == "%.4f" % data["printed_-p(pymteval)"]["NIST"]


@requires_java
@pytest.mark.parametrize("system", ["tgen", "sheff1", "dangnt"])
def test_e2e_test_set_systems_match_official(jvm, metrics_cases, system):
    case = metrics_cases / "e2e" / "test"
    data = json.loads((case / "expected.json").read_text())["systems"][system]
    _, refs, hyps = load_data(case / "references_multi.txt", case / "systems" / f"{system}.txt")
    assert len(refs) == 630 and sum(map(len, refs)) == 4693
    scores, python = _score(jvm, refs, hyps)
    _check(system, scores, python, data["full_precision"])
    for metric, printed in data["printed_default(perl)"].items():
        assert "%.4f" % scores[metric] == "%.4f" % printed, metric


def _edge_inputs(case_dir):
    """Edge cases built from the example inputs; their expected numbers come from the official
    e2e-metrics scorer (both routes) run on exactly these inputs."""
    refs = read_multi_refs(case_dir / "devel-conc.txt")
    hyps = (case_dir / "baseline-output.txt").read_text(encoding="utf-8").splitlines()
    with_odd = list(hyps)
    with_odd[2] = ""  # an empty output
    with_odd[5], with_odd[7] = "Cocum .", "ok"  # shorter than 4 tokens (negative pymteval counts)
    with_odd[8] = "The ÉCOLE İs &amp; <b> fine\u00a0x  — 0 stars, 0 0 1 ."
    zero_refs = [list(r) for r in refs]
    zero_refs[0].append("0 stars and 0 stars for 0 people")  # Perl's "is the prefix '0' true?" quirk
    zero_refs[1] = zero_refs[1][:1]
    zero_hyps = list(hyps)
    zero_hyps[0] = "It has 0 stars for 0 people"
    return {
        # name: refs, hyps, (BLEU perl, NIST perl, BLEU -p, NIST -p, METEOR, ROUGE_L, CIDEr)
        "odd_outputs": (refs, with_odd, (0.502713505447, 4.416959281005, 0.5175262353707142,
                                         3.9396592025822343, 0.2879103621844606, 0.4536729592572839,
                                         1.3721628391699134)),
        "single_ref": ([[r[0]] for r in refs], hyps, (0.20316550872, 3.237885298059, 0.20316550871997527,
                                                      3.2378852980590405, 0.31539949639381065,
                                                      0.45132905054460526, 1.4994357787751675)),
        "zero_word": (zero_refs, zero_hyps, (0.711864508136, 8.032547125941, 0.7118645081358397,
                                             7.743717827732347, 0.4750729339203125, 0.7812019280746181,
                                             2.272296735465008)),
    }


@requires_java
@pytest.mark.parametrize("name", ["odd_outputs", "single_ref", "zero_word"])
def test_edge_cases_match_official(jvm, metrics_cases, name):
    refs, hyps, expected = _edge_inputs(metrics_cases / "e2e" / "example-inputs")[name]
    scores, python = _score(jvm, refs, hyps)
    got = (scores["BLEU"], scores["NIST"], python["BLEU"], python["NIST"], scores["METEOR"],
           scores["ROUGE_L"], scores["CIDEr"])
    tolerances = (1e-4, 1e-3, 1e-4, 1e-3, 1e-4, 1e-4, 1e-3)
    for value, want, tol in zip(got, expected, tolerances):
        assert abs(value - want) <= tol, (got, expected)


@pytest.mark.parametrize("name", ["odd_outputs", "single_ref", "zero_word"])
def test_edge_cases_match_official_without_java(metrics_cases, monkeypatch, name):
    _without_java(monkeypatch)
    refs, hyps, expected = _edge_inputs(metrics_cases / "e2e" / "example-inputs")[name]
    result = e2e_scores(refs, hyps, route="perl", log=lambda _: None)
    assert result.approximate == () and result.notes == []
    for metric, want, tol in zip(("METEOR", "ROUGE_L", "CIDEr"), expected[4:], (1e-4, 1e-4, 1e-3)):
        assert abs(result.scores[metric] - want) <= tol, (metric, result.scores[metric], want)


@requires_java
def test_cli_prints_official_lines(jvm, metrics_cases, monkeypatch, capsys, tmp_path):
    measure_scores = _measure_scores()

    meteor, tokenizer = jvm

    class Shared:  # hand the module's JVM to the CLI and keep it open afterwards
        def __init__(self, *args, **kwargs):
            pass

        def __getattr__(self, name):
            return getattr(meteor, name)

        def close(self):
            pass

    monkeypatch.setattr("gpt2_lora.metrics.meteor.Meteor", Shared)
    case = metrics_cases / "e2e" / "example-inputs"
    printed = json.loads((case / "expected.json").read_text())["scores"]["printed_-p(pymteval)"]
    out_json = tmp_path / "s.json"
    measure_scores.main(["-p", str(case / "devel-conc.txt"), str(case / "baseline-output.txt"),
                         "--json", str(out_json)])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["SCORES:", "=============="] + [
        f"{m}: {printed[m]:.4f}" for m in ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")] + [""]
    written = json.loads(out_json.read_text())
    assert written["NIST"] == pytest.approx(7.788887609555574, abs=1e-9) and written["approximate"] == []


@requires_java
def test_ptb_jar_and_python_tokenizer_agree_on_e2e(jvm, metrics_cases):
    _, tokenizer = jvm
    refs = read_multi_refs(metrics_cases / "e2e" / "example-inputs" / "devel-conc.txt")
    sentences = [r for group in refs for r in group]
    official = tokenizer.tokenize(sentences)
    assert official == [python_tokenize(s) for s in sentences]


@pytest.mark.parametrize("system", ["tgen", "sheff1", "dangnt"])
def test_e2e_test_set_systems_match_official_without_java(metrics_cases, monkeypatch, system):
    """The whole Python route (PTB tokenizer, METEOR, ROUGE-L, CIDEr) on the test set, both BLEU routes."""
    _without_java(monkeypatch)
    case = metrics_cases / "e2e" / "test"
    data = json.loads((case / "expected.json").read_text())["systems"][system]
    _, refs, hyps = load_data(case / "references_multi.txt", case / "systems" / f"{system}.txt")
    result = e2e_scores(refs, hyps, route="perl", log=lambda _: None)
    assert result.approximate == () and result.notes == []
    _check(system, result.scores, bleu_nist(hyps, refs, "python"), data["full_precision"])


@requires_java
def test_stock_meteor_matches_file_mode():
    """Stock jar via -stdio == the stock jar's file mode as GenerationEval runs it (``java -jar
    Meteor-1.5.jar hyp ref -l en -norm -r 2``, paraphrase-en.gz): "Final score: 0.3924516544829865".
    Two segments match a reference completely, so the jar's chunk rule in addStats matters."""
    from gpt2_lora.metrics.meteor import Meteor

    hyps = ["the cat sat on the mat .", "a dog runs in the park", "completely unrelated words here",
            "the house is red"]
    refs = [["the cat sat on the mat .", "a cat was on a mat"], ["the dog is running in a park", "dogs run"],
            ["nothing in common", "still nothing"], ["the house is red", "a red house"]]
    with Meteor("stock", num_refs=2) as meteor:
        corpus, segments = meteor.score(hyps, refs, segments=True)
    assert corpus == pytest.approx(0.3924516544829865, abs=1e-12)
    assert segments[0] == segments[3] == 1.0 and segments[2] == 0.0
