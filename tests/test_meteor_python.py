"""METEOR 1.5 in Python: its parts against the jar's known outputs (stemmer, normaliser, String.hashCode,
statistics lines), the score and aggregation formulas by hand, the paraphrase cache, the official corpus
numbers of every metric case without Java, and, with Java, every segment's statistics against the jar."""

from __future__ import annotations

import gzip
import json
import math

import pytest
from conftest import requires_java

from gpt2_lora.errors import UserError
from gpt2_lora.metrics import generationeval as ge
from gpt2_lora.metrics import meteor_paraphrase, meteor_stats
from gpt2_lora.metrics.e2e import load_data
from gpt2_lora.metrics.java import JavaUnavailable, jar_path
from gpt2_lora.metrics.meteor_text import java_hash, java_lower, normalize, parse_prefixes
from gpt2_lora.metrics.ptb_tokenizer import PTBTokenizer
from gpt2_lora.metrics.snowball_english import stem


def _have_wheel() -> bool:
    try:
        jar_path("meteor_coco")
        jar_path("paraphrase_en", verify=False)
    except JavaUnavailable:
        return False
    return True


requires_wheel = pytest.mark.skipif(not _have_wheel(), reason="needs the pycocoevalcap==1.2 wheel")


# -------------------------------------------------------------------------------------------------
# Parts, against the jar's own outputs
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("word, expected", [
    # what org.tartarus.snowball.ext.englishStemmer (in meteor-1.5.jar) gives
    ("running", "run"), ("cats", "cat"), ("generously", "generous"), ("skies", "sky"), ("dying", "die"),
    ("news", "news"), ("hoping", "hope"), ("inning", "inning"), ("proceeded", "proceed"), ("gaps", "gap"),
    ("gas", "gas"), ("ties", "tie"), ("cries", "cri"), ("say", "say"), ("cry", "cri"), ("happy", "happi"),
    ("arsenal", "arsenal"), ("communism", "communism"), ("dog's", "dog"), ("''s", ""), ("ayy", "ayi"),
    ("realization", "realiz"), ("irrationality", "irrat"), ("sensationalism", "sensat"),  # nltk: realize ...
    ("Abc", "Abc"), ("RUNNING", "RUNNING"), ("x'", "x'"), ("énergie", "énergi"),
])
def test_snowball_english_as_the_jar(word, expected):
    assert stem(word) == expected


def test_java_string_hash():
    assert [java_hash(s) for s in ("hello", "", "polygenelubricants", "\U0001f600", "café")] == [
        99162322, 0, -2147483648, 1772899, 3045921]
    assert java_hash("Aa") == java_hash("BB") == 2112  # a collision: the jar's exact matcher would match these


@requires_wheel
def test_normalizer_as_the_jar():
    import zipfile

    with zipfile.ZipFile(jar_path("meteor_coco")) as jar:
        prefixes = parse_prefixes(jar.read("nonbreaking/english.prefixes").decode("utf-8").splitlines())
    cases = {  # Normalizer.normalizeLine(line, English, keepPunctuation=true).toLowerCase()
        "The U.S.-based firm's CEO said: \"It's 1,000.50 dollars...\" (really)":
            "the us based firm 's ceo said : \" it 's 1,000.50 dollars ... \" ( really )",
        "Mr. Smith arrived at 5 p.m. Then he left.": "mr. smith arrived at 5 pm then he left .",
        "Rock\u2013n\u2013roll \u2018quoted\u2019 \u201cdouble\u201d e.g. no. 5":
            "rock - n - roll ' quoted ' \" double \" eg no . 5",
    }
    for line, expected in cases.items():
        assert java_lower(normalize(line, prefixes)) == expected


# -------------------------------------------------------------------------------------------------
# Score and aggregation, by hand
# -------------------------------------------------------------------------------------------------
def _stats(test_len, ref_len, test_fn, ref_fn, exact=(0, 0, 0, 0), stem_=(0, 0, 0, 0), chunks=0):
    matched_test = exact[0] + exact[2] + stem_[0] + stem_[2]
    matched_ref = exact[1] + exact[3] + stem_[1] + stem_[3]
    return (test_len, ref_len, test_fn, ref_fn, *exact, *stem_, 0, 0, 0, 0, 0, 0, 0, 0, chunks, matched_test,
            matched_ref)


def test_score_by_hand():
    # "the cat sat" vs "the cat": 'the' (function word) and 'cat' matched exactly, in one chunk
    stats = _stats(3, 2, 1, 1, exact=(1, 1, 1, 1), chunks=1)
    precision = (0.75 + 0.25) / (0.75 * 2 + 0.25 * 1)
    recall = (0.75 + 0.25) / (0.75 * 1 + 0.25 * 1)
    f_mean = 1 / (0.15 / precision + 0.85 / recall)
    expected = f_mean * (1 - 0.6 * (1 / ((2 + 2) / 2)) ** 0.2)
    assert meteor_stats.score(stats) == pytest.approx(expected, rel=1e-15)
    # a stem match counts 0.6: test "dogs" vs reference "dog"; a complete one-chunk match has no penalty
    assert meteor_stats.score(_stats(1, 1, 0, 0, stem_=(1, 1, 0, 0), chunks=1)) == pytest.approx(0.6)
    assert meteor_stats.score(_stats(2, 2, 0, 0, exact=(2, 2, 0, 0), chunks=1)) == 1.0
    # nothing matched, an empty hypothesis, or nothing at all: 0 (the jar's NaN guard)
    assert meteor_stats.score(_stats(3, 4, 0, 0)) == 0.0
    assert meteor_stats.score(_stats(0, 3, 0, 0)) == 0.0
    assert meteor_stats.score([0.0] * 23) == 0.0


def test_corpus_aggregation_drops_the_chunk_of_complete_matches():
    perfect = _stats(2, 2, 0, 0, exact=(2, 2, 0, 0), chunks=1)
    partial = _stats(3, 2, 1, 1, exact=(1, 1, 1, 1), chunks=1)
    total = [0.0] * 23
    meteor_stats.add(total, perfect)
    meteor_stats.add(total, partial)
    assert total[0] == 5 and total[4] == 3 and total[20] == 1  # only the partial segment's chunk
    assert meteor_stats.corpus_score([perfect, partial]) == meteor_stats.score(total)
    line = meteor_stats.format_stats(partial)
    assert line.startswith("3.0 2.0 1.0 1.0 1.0") and meteor_stats.parse_stats(line) == tuple(map(float, partial))


# -------------------------------------------------------------------------------------------------
# The paraphrase cache, on a small table of the same layout
# -------------------------------------------------------------------------------------------------
def _table(path, entries):
    text = "".join(f"0.5\n{phrase}\n{paraphrase}\n" for phrase, paraphrase in entries)
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    return path


def test_paraphrase_cache_keeps_file_order_and_filters_by_corpus(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setenv("GPT2_LORA_CACHE", str(tmp_path / "cache"))
    entries = [("the cat", "a cat"), ("cat", "feline"), ("the cat", "the kitty"), ("dog", "hound"),
               ("the", "a"), ("cat sat", "kitty that"), ("the cat", "that cat")]
    source = _table(tmp_path / "paraphrase-en.gz", entries)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    table = meteor_paraphrase.ParaphraseTable.load(source, sha)
    assert len(table.phrase_length) == 7 and len(list((tmp_path / "cache").iterdir())) == 1
    # kept: entries whose phrase and paraphrase both occur in the corpus ("feline", "hound" do not
    # occur; "kitty that" has corpus words but is not a corpus n-gram)
    index = table.for_corpus([("the", "cat", "sat"), ("a", "cat", "and", "the", "kitty"), ("that", "cat"), ("dog",)])
    assert index.table == {("the", "cat"): [("a", "cat"), ("the", "kitty"), ("that", "cat")], ("the",): [("a",)]}
    assert index.paths(("the", "cat", "sat"), 0) == [(1, ("a",)), (2, ("a", "cat")), (2, ("the", "kitty")),
                                                     (2, ("that", "cat"))]
    assert index.paths(("the", "cat", "sat"), 1) == []
    # a second load reads the cache without converting again
    monkeypatch.setattr(meteor_paraphrase, "_convert", lambda *a: pytest.fail("converted twice"))
    assert meteor_paraphrase.ParaphraseTable.load(source, sha).words == table.words


def test_paraphrase_cache_that_cannot_be_written_only_costs_time(tmp_path, monkeypatch):
    import hashlib

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("GPT2_LORA_CACHE", str(blocker / "cache"))
    source = _table(tmp_path / "paraphrase-en.gz", [("the cat", "a cat"), ("the", "a")])
    table = meteor_paraphrase.ParaphraseTable.load(source, hashlib.sha256(source.read_bytes()).hexdigest())
    assert table.for_corpus([("the", "cat"), ("a", "cat")]).table == {("the", "cat"): [("a", "cat")],
                                                                         ("the",): [("a",)]}
    assert blocker.read_text() == ""


def test_paraphrase_table_must_be_the_pinned_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2_LORA_CACHE", str(tmp_path / "cache"))
    source = _table(tmp_path / "paraphrase-en.gz", [("a", "b")])
    with pytest.raises(UserError, match="not the pycocoevalcap==1.2 paraphrase table"):
        meteor_paraphrase.ParaphraseTable.load(source, "0" * 64)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"0.5\na  b\nc\n"))
    import hashlib

    with pytest.raises(UserError, match="unexpected white space"):
        meteor_paraphrase.ParaphraseTable.load(bad, hashlib.sha256(bad.read_bytes()).hexdigest())


# -------------------------------------------------------------------------------------------------
# Alignments and the official numbers, without Java
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def python_meteor():
    if not _have_wheel():
        pytest.skip("needs the pycocoevalcap==1.2 wheel")
    from gpt2_lora.metrics.meteor_python import PythonMeteor

    return PythonMeteor


@pytest.mark.parametrize("hyp, ref, jar_line", [
    # `SCORE ||| ref ||| hyp` through `java -jar meteor-1.5.jar - - -stdio -l en -norm`
    ("a cat sat on the mat", "the cat is on the mat",
     "6.0 6.0 3.0 4.0 2.0 2.0 2.0 2.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 4.0 4.0"),
    ("the dog runs fast", "the dogs were running quickly",
     "4.0 5.0 1.0 2.0 0.0 0.0 1.0 1.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 1.0 2.0 2.0"),
    ("an inexpensive eatery near the riverside", "the restaurant serves cheap food near the river",
     "6.0 8.0 2.0 2.0 1.0 1.0 1.0 1.0 0.0 0.0 0.0 0.0 1.0 1.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 3.0 3.0"),
    ("a b a a", "a a a b",
     "4.0 4.0 3.0 3.0 1.0 1.0 3.0 3.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2.0 4.0 4.0"),
    ("", "x y z", "0.0 3.0 " + "0.0 " * 20 + "0.0"),
])
def test_alignment_statistics_as_the_jar(python_meteor, hyp, ref, jar_line):
    assert python_meteor().stats([hyp], [[ref]]) == [jar_line]


def _e2e_tokenised(case_dir, refs_name, hyps_name):
    _, refs, hyps = load_data(case_dir / refs_name, case_dir / hyps_name)
    tokens = PTBTokenizer(route="python").tokenize([r for g in refs for r in g] + list(hyps))
    groups, start = [], 0
    for group in refs:
        groups.append(tokens[start:start + len(group)])
        start += len(group)
    return tokens[start:], groups


E2E_CASES = [("example-inputs", "devel-conc.txt", "baseline-output.txt", None)] + [
    ("test", "references_multi.txt", f"systems/{s}.txt", s) for s in ("tgen", "sheff1", "dangnt")]


@pytest.mark.parametrize("folder, refs_name, hyps_name, system", E2E_CASES)
def test_e2e_corpus_meteor_equals_official_without_java(python_meteor, metrics_cases, folder, refs_name,
                                                        hyps_name, system):
    case = metrics_cases / "e2e" / folder
    data = json.loads((case / "expected.json").read_text())
    expected = (data["scores"] if system is None else data["systems"][system])["full_precision"]["METEOR"]
    hyps, refs = _e2e_tokenised(case, refs_name, hyps_name)
    assert abs(python_meteor("coco").corpus_score(hyps, refs) - expected) <= 1e-4


@pytest.mark.parametrize("layout", ["webnlg2017_Baseline", "webnlg2017_Baseline_nofinalnewline"])
def test_generationeval_meteor_equals_official_without_java(python_meteor, metrics_cases, layout):
    case = metrics_cases / "generationeval"
    expected = json.loads((case / "expected.json").read_text())["cases"]["webnlg2017_Baseline_nofinalnewline"]
    result = ge.score_files(case / layout / "references" / "reference", case / layout / "hypothesis", 6,
                            metrics=("meteor",), meteor=python_meteor("stock", num_refs=6))
    assert abs(result.meteor - expected["results"]["nltk3.5(official pin)"]["meteor"]) <= 1e-4


# -------------------------------------------------------------------------------------------------
# With Java: every segment's statistics equal the jar's
# -------------------------------------------------------------------------------------------------
@requires_java
@pytest.mark.parametrize("folder, refs_name, hyps_name, system", E2E_CASES)
def test_e2e_segment_statistics_equal_the_jar(python_meteor, metrics_cases, folder, refs_name, hyps_name, system):
    from gpt2_lora.metrics.meteor import Meteor

    hyps, refs = _e2e_tokenised(metrics_cases / "e2e" / folder, refs_name, hyps_name)
    with Meteor("coco") as jar:
        jar_lines = jar.stats(hyps, refs)
    ours = python_meteor("coco").stats(hyps, refs)
    differing = [(h, a, b) for h, a, b in zip(hyps, jar_lines, ours) if a != b]
    assert not differing, differing[:3]


@requires_java
def test_webnlg_segment_statistics_equal_the_jar(python_meteor, metrics_cases):
    from gpt2_lora.metrics.meteor import Meteor

    layout = metrics_cases / "generationeval" / "webnlg2017_Baseline"
    hyps, refs = ge.read_inputs(layout / "references" / "reference", layout / "hypothesis", 6)
    hyps, refs = ge.word_tokenize(hyps), [ge.word_tokenize(r) for r in refs]
    with Meteor("stock", num_refs=6) as jar:
        jar_lines = jar.stats(hyps, refs)
    ours = python_meteor("stock", num_refs=6).stats(hyps, refs)
    differing = [(h, a, b) for h, a, b in zip(hyps, jar_lines, ours) if a != b]
    assert not differing, differing[:3]
    assert math.isclose(meteor_stats.corpus_score([meteor_stats.parse_stats(l) for l in ours]),
                        0.2348928952981592, abs_tol=1e-12)
