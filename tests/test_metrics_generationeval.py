"""WebNLG/DART scorer (GenerationEval): hand-computed TER and BLEU on tiny inputs, pyter3 equality,
input reading (incl. the phantom-segment defect we must not reproduce), the eval/eval.py CLI, and
parity with GenerationEval's official numbers (../shared/metrics-cases/generationeval)."""

from __future__ import annotations

import importlib.util
import json
import math
import random

import pytest
from conftest import ROOT, requires_java

from gpt2_lora.errors import UserError
from gpt2_lora.metrics import generationeval as ge
from gpt2_lora.metrics import meteor as meteor_mod
from gpt2_lora.metrics.multibleu import corpus_bleu, tokenize
from gpt2_lora.metrics.ter import corpus_ter, segment_ter, ter


def _eval_cli():
    """eval/eval.py as a module (eval/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("generationeval_cli", ROOT / "eval" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, text: str | bytes):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _layout(tmp_path, hyps: list[str], refs: list[list[str]], final_newline: bool = True):
    """A GenerationEval layout: tmp/hypothesis and tmp/references/reference0..N-1."""
    end = "\n" if final_newline else ""
    _write(tmp_path / "hypothesis", "\n".join(hyps) + end)
    (tmp_path / "references").mkdir(exist_ok=True)
    for i in range(len(refs[0])):
        _write(tmp_path / "references" / f"reference{i}", "\n".join(seg[i] for seg in refs) + end)
    return tmp_path / "references" / "reference", tmp_path / "hypothesis"


# ---------------------------------------------------------------------------------------------
# TER (pyter3 semantics), hand-computed
# ---------------------------------------------------------------------------------------------
def test_ter_hand_computed():
    assert ter("a b c".split(), "a b c".split()) == 0.0
    # empty hypothesis: three insertions over three reference words
    assert ter([], "a b c".split()) == 1.0
    # one substitution over four reference words
    assert ter("a b x d".split(), "a b c d".split()) == 0.25
    # 'a' shifted to the front costs one shift instead of two edits: 1 / 3
    assert ter("b c a".split(), "a b c".split()) == pytest.approx(1 / 3)
    # pyter3's own docstring example: 4 edits (1 shift + 3) over 13 reference words
    ref = "SAUDI ARABIA denied THIS WEEK information published in the AMERICAN new york times".split()
    hyp = "THIS WEEK THE SAUDIS denied information published in the new york times".split()
    assert ter(hyp, ref) == pytest.approx(4 / 13)
    with pytest.raises(ZeroDivisionError):
        ter("a".split(), [])


def test_segment_and_corpus_ter_like_generationeval():
    # min over references; an empty reference scores 1 (GenerationEval's len(ref) == 0 branch)
    assert segment_ter("a b c", ["a b x", "a b c"]) == 0.0
    assert segment_ter("a b c", ["", "a x y"]) == pytest.approx(2 / 3)
    assert segment_ter("a b", [""]) == 1.0
    assert segment_ter("", ["a b"]) == 1.0
    # uneven reference counts per segment; the corpus score is the plain mean
    assert corpus_ter(["a b c d", "x y"], [["a b c d"], ["x z", "x y", ""]]) == 0.0
    assert corpus_ter(["a b x d", ""], [["a b c d"], ["p", "q r"]]) == pytest.approx((0.25 + 1.0) / 2)


def test_ter_equals_pyter3_on_random_pairs():
    pyter = pytest.importorskip("pyter")
    rng = random.Random(1234)
    for _ in range(400):
        vocab = "a b c d e the of , .".split()[: rng.randint(2, 9)]  # small vocabularies: many ties
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 12))]
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 12))]
        assert ter(hyp, ref) == pyter.ter(hyp, ref), (hyp, ref)


# ---------------------------------------------------------------------------------------------
# BLEU (multi-bleu-detok.perl semantics), hand-computed
# ---------------------------------------------------------------------------------------------
def test_mteval_tokenization_as_multi_bleu_detok():
    assert tokenize("Hello, world.") == ["Hello", ",", "world", "."]
    assert tokenize("3.5 and 1,000 (approx)") == ["3.5", "and", "1,000", "(", "approx", ")"]
    assert tokenize("12-3 e-mail") == ["12", "-", "3", "e-mail"]
    assert tokenize("&quot;A&amp;B&quot;") == ['"', "A", "&", "B", '"']
    # the script reads bytes: only ASCII whitespace separates words (a no-break space does not)
    assert tokenize("a\u00a0b\tc") == ["a\u00a0b", "c"]
    assert tokenize("   ") == []


def test_bleu_hand_computed():
    assert corpus_bleu(["the cat sat on the mat"], [["the cat sat on the mat"]]).score == 1.0
    # all precisions 1, hypothesis shorter: BP = exp(1 - 7/5)
    result = corpus_bleu(["a b c d e"], [["a b c d e f g"]])
    assert result.score == pytest.approx(math.exp(1 - 7 / 5))
    assert result.format() == ("BLEU = 67.03, 100.0/100.0/100.0/100.0 (BP=0.670, ratio=0.714, "
                               "hyp_len=5, ref_len=7)")
    # no 4-gram match anywhere: 0 (no smoothing)
    assert corpus_bleu(["a b c"], [["a b c"]]).score == 0.0


def test_bleu_empty_hypothesis_is_zero():
    assert corpus_bleu([""], [["a b c d"]]).score == 0.0
    assert corpus_bleu(["", ""], [["a b c d"], [""]]).score == 0.0


def test_bleu_closest_reference_length_ties_to_shorter_and_counts_empty_refs():
    # refs of 2 and 6 words are equally close to 4: the shorter (2) is taken, so BP = 1
    assert corpus_bleu(["a b c d"], [["a b", "a b c d x y"]]).score == 1.0
    # an empty reference line is a reference of length 0 (4 away, vs 5 for the 9-word one);
    # dropping it (as sacrebleu does) would give ref_len 13 > hyp_len 8 and BP = exp(1 - 13/8)
    result = corpus_bleu(["a b c d", "a b c d"], [["", "a b c d e f g h i"], ["a b c d"]])
    assert (result.ref_len, result.score) == (4, 1.0)
    # with no reference words at all the script prints BLEU = 0
    assert corpus_bleu(["a b c d"], [[""]]).format().startswith("BLEU = 0, 0/0/0/0")


def test_bleu_uneven_reference_counts():
    hyps = ["a b c d", "e f g h"]
    refs = [["a b x d"], ["x y", "e f g h i j"]]
    # 1-grams 3+4 of 4+4, 2-grams 1+3 of 3+3, 3-grams 0+2 of 2+2, 4-grams 0+1 of 1+1;
    # ref_len 4 + 2 (tie between 2 and 6 words -> 2) < hyp_len 8, so BP = 1
    expected = (7 / 8 * 4 / 6 * 2 / 4 * 1 / 2) ** 0.25
    result = corpus_bleu(hyps, refs)
    assert result.score == pytest.approx(expected, abs=1e-12)
    assert (result.hyp_len, result.ref_len) == (8, 6)
    assert result.precisions == pytest.approx((7 / 8, 4 / 6, 2 / 4, 1 / 2))


def test_bleu_lowercase_is_ascii_only():
    assert corpus_bleu(["A B C D"], [["a b c d"]], lowercase=True).score == 1.0
    assert corpus_bleu(["É B C D"], [["é b c d"]], lowercase=True).score < 1.0


# ---------------------------------------------------------------------------------------------
# Reading inputs
# ---------------------------------------------------------------------------------------------
def test_read_inputs_ignores_final_newline(tmp_path):
    hyps, refs = ["h one", "h two"], [["r0 one", ""], ["r0 two", "r1 two"]]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_nl = _layout(tmp_path / "a", hyps, refs, final_newline=True)
    without_nl = _layout(tmp_path / "b", hyps, refs, final_newline=False)
    assert ge.read_inputs(*with_nl, 2) == (hyps, refs) == ge.read_inputs(*without_nl, 2)
    # GenerationEval's reading (split on '\n') would add a third, empty segment here
    assert with_nl[1].read_text().split("\n") == ["h one", "h two", ""]


def test_read_inputs_single_reference_file(tmp_path):
    _write(tmp_path / "ref", "r1\nr2\n")
    _write(tmp_path / "hyp", "h1\nh2\n")
    assert ge.read_inputs(tmp_path / "ref", tmp_path / "hyp", 1) == (["h1", "h2"], [["r1"], ["r2"]])


@pytest.mark.parametrize("case, message", [
    ("unequal", "has 1 line"),
    ("empty_hyp", "hypothesis file is empty"),
    ("empty_ref", "reference file is empty"),
    ("missing_ref", "reference file not found"),
    ("bad_utf8", "not valid UTF-8"),
])
def test_read_inputs_bad_input_is_one_line_user_error(tmp_path, case, message):
    prefix, hyp = _layout(tmp_path, ["a b", "c d"], [["a b", "a b"], ["c d", "c d"]])
    if case == "unequal":
        _write(tmp_path / "references" / "reference1", "a b\n")
    elif case == "empty_hyp":
        _write(hyp, "")
    elif case == "empty_ref":
        _write(tmp_path / "references" / "reference0", "")
    elif case == "missing_ref":
        (tmp_path / "references" / "reference1").unlink()
    else:
        _write(tmp_path / "references" / "reference1", b"a b\nc \xff d\n")
    with pytest.raises(UserError) as info:
        ge.read_inputs(prefix, hyp, 2)
    assert message in str(info.value) and "\n" not in str(info.value)
    if case == "bad_utf8":
        assert "reference1:2" in str(info.value)


def test_word_tokenize_splits_sentences_like_nltk_punkt():
    # Punkt splits the sentences first, so the inner period becomes a token too ("Mr." stays one)
    assert ge.word_tokenize(["Mr. Smith left. She came, then went."]) == [
        "Mr. Smith left . She came , then went ."]


def test_parse_metrics():
    assert ge.parse_metrics("BLEU, meteor,ter,bleu") == ("bleu", "meteor", "ter")
    for bad in ("bleu,chrf++", ""):
        with pytest.raises(UserError):
            ge.parse_metrics(bad)


# ---------------------------------------------------------------------------------------------
# Scoring and the CLI
# ---------------------------------------------------------------------------------------------
def _no_meteor(monkeypatch):
    """Neither route can run: no Java, and no pycocoevalcap wheel for the Python port's data."""
    def no_jar(*args, **kwargs):
        raise meteor_mod.MeteorUnavailable("METEOR unavailable: no Java runtime found")

    def no_wheel(*args, **kwargs):
        raise UserError("METEOR unavailable: meteor/meteor-1.5.jar not found: install pycocoevalcap==1.2")

    monkeypatch.setattr(meteor_mod, "Meteor", no_jar)
    monkeypatch.setattr(meteor_mod, "PythonMeteor", no_wheel)


def test_score_without_any_meteor_route_reports_meteor_unavailable(monkeypatch):
    _no_meteor(monkeypatch)
    result = ge.score(["a b c d", "e f g h"], [["a b c d", "x"], ["e f g h", "e f"]], num_refs=2)
    assert result.meteor is None and "no Java" in result.notes[0] and "pycocoevalcap" in result.notes[0]
    assert (result.bleu, result.ter) == (100.0, 0.0)


def test_score_without_java_computes_meteor_in_python(monkeypatch):
    from gpt2_lora.metrics import java

    monkeypatch.setattr(java, "find_java", lambda: None)
    hyps, refs = ["The cat sat on the mat.", "A dog ran."], [["The cat sat on the mat."], ["A dog ran."]]
    result = ge.score(hyps, refs, metrics=("meteor",))
    assert result.meteor == 1.0 and result.notes == []
    # the jar asked for by name, with no Java, is an error
    with pytest.raises(meteor_mod.MeteorUnavailable, match="no Java runtime"):
        ge.score(hyps, refs, metrics=("meteor",), meteor_route="jar")


def test_cli_meteor_python_route(tmp_path, capsys):
    prefix, hyp = _layout(tmp_path, ["the cat sat on the mat", "a dog ran"],
                          [["the cat sat on the mat"], ["a dog ran quickly"]])
    out = tmp_path / "scores.json"
    assert _eval_cli().main(["-R", f"{prefix}0", "-H", str(hyp), "-nr", "1", "-m", "meteor", "--meteor", "python",
                             "--json", str(out)]) == 0
    # the stock jar on these files (java -jar Meteor-1.5.jar hyp ref -l en -norm -r 1): "Final score: 0.540784604606"
    assert json.loads(out.read_text())["meteor"] == pytest.approx(0.540784604606, abs=1e-12)
    assert capsys.readouterr().out.splitlines() == ["  METEOR", "--------", "    0.54"]


def test_cli_prints_table_and_writes_json(tmp_path, monkeypatch, capsys):
    _no_meteor(monkeypatch)
    prefix, hyp = _layout(tmp_path, ["a b c d", "e f g h"], [["a b c d", "a b c d"], ["e f g x", "e f g h"]])
    out = tmp_path / "scores.json"
    assert _eval_cli().main(["-R", str(prefix), "-H", str(hyp), "-nr", "2", "-m", "bleu,meteor,ter",
                             "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "  BLEU    BLEU NLTK    METEOR    TER",
        "------  -----------  --------  -----",
        "   100            1       n/a      0",
    ]
    assert "METEOR not computed" in captured.err
    assert json.loads(out.read_text()) == {"bleu": 100.0, "bleu_nltk": 1.0, "meteor": None, "ter": 0.0}


def test_cli_bad_input_exits_2(tmp_path, capsys):
    prefix, hyp = _layout(tmp_path, ["a", "b"], [["a"], ["b"]])
    with pytest.raises(SystemExit) as info:
        _eval_cli().main(["-R", str(prefix), "-H", str(hyp), "-nr", "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: reference file not found") and "\n" not in err


@pytest.fixture(scope="module")
def stock_meteor():
    """One stock METEOR JVM for this module (starting one takes seconds)."""
    if not meteor_mod.java_available():
        yield None
        return
    with meteor_mod.Meteor(variant="stock") as scorer:
        yield scorer


@requires_java
def test_meteor_perfect_match_is_one(stock_meteor):
    result = ge.score(["The cat sat on the mat.", "A dog ran."], [["The cat sat on the mat."], ["A dog ran."]],
                      metrics=("meteor",), meteor=stock_meteor)
    assert result.meteor == 1.0 and result.bleu is None and result.ter is None


# ---------------------------------------------------------------------------------------------
# Parity with GenerationEval on real data (WebNLG 2017 baseline, 1,862 segments x 6 references)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def official(metrics_cases):
    case = metrics_cases / "generationeval"
    expected = json.loads((case / "expected.json").read_text())
    return case, {name: c["results"]["nltk3.5(official pin)"] for name, c in expected["cases"].items()}


def test_both_layouts_read_identically(official):
    case, _ = official
    a = ge.read_inputs(case / "webnlg2017_Baseline" / "references" / "reference",
                       case / "webnlg2017_Baseline" / "hypothesis", 6)
    b = ge.read_inputs(case / "webnlg2017_Baseline_nofinalnewline" / "references" / "reference",
                       case / "webnlg2017_Baseline_nofinalnewline" / "hypothesis", 6)
    assert a == b and len(a[0]) == 1862


def test_generationeval_parity(official, stock_meteor):
    case, expected = official
    want = expected["webnlg2017_Baseline_nofinalnewline"]
    # the layout with final newlines, which GenerationEval itself scores wrongly (METEOR -1)
    assert expected["webnlg2017_Baseline"]["meteor"] == -1.0
    layout = case / "webnlg2017_Baseline"
    # METEOR: the module's jar when Java is found; else the Python route (tests/test_meteor_python.py
    # checks that one on both layouts)
    result = ge.score_files(layout / "references" / "reference", layout / "hypothesis", 6, meteor=stock_meteor)
    assert result.bleu == pytest.approx(want["bleu"], abs=0.01)
    assert result.bleu_nltk == pytest.approx(want["bleu_nltk"], abs=1e-9)
    assert result.ter == pytest.approx(want["ter"], abs=0.0005)
    assert result.meteor == pytest.approx(want["meteor"], abs=0.0005)
