"""The Python port of CoreNLP 3.4.1's PTBTokenizer (``-preserveLines -lowerCase``): known tokenisations
(the jar's own output on these lines), and, with Java, equality with the jar on every sentence of the
E2E metric cases and on random text."""

from __future__ import annotations

import random

import pytest
from conftest import requires_java

from gpt2_lora.metrics.e2e import load_data
from gpt2_lora.metrics.ptb_lexer import tokenize_lines
from gpt2_lora.metrics.ptb_tokenizer import _LINE_BREAKS, PTBTokenizer, python_tokenize, run_ptb_jar

# (line, what `java edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase` prints for it)
KNOWN = [
    ("The U.S. The end.", "the u.s. . the end ."),
    ("Mr. Smith's 5-star place; 20-25 yes!", "mr. smith 's 5-star place ; 20-25 yes !"),
    ("It's cheap (really) -- isn't it?", "it 's cheap -lrb- really -rrb- -- is n't it ?"),
    ('"Quoted" text ... end', "`` quoted '' text ... end"),
    ("I cannot go, gonna stay.", "i can not go , gon na stay ."),
    ("Call (555) 123-4567 or 555-1234 now.", "call -lrb-555-rrb-\u00a0123-4567 or 555-1234 now ."),
    ("He paid £20, €5 and ¢50 for ½ a cake.", "he paid # 20 , $ 5 and cents 50 for 1/2 a cake ."),
    ("See http://example.com/a?b=c or www.foo.com, mail foo@bar.com.",
     "see http://example.com/a?b=c or www.foo.com , mail foo@bar.com ."),
    ("AT&amp;T and S&P-500 rose 3.5% on 10/12/2014.", "at&t and s&p-500 rose 3.5 % on 10/12/2014 ."),
    ("'Tis the season; 'twas fun. Rock'n'roll, y'all!",
     "'t is the season ; 't was fun . rock 'n' roll , y' all !"),
    ("The Co. Ltd. is in Calif. Next sentence.", "the co. ltd. is in calif. . next sentence ."),
    ("Emoji \U0001f600 here and a soft\u00adhyphen.", "emoji here and a softhyphen ."),
]


@pytest.mark.parametrize("line, expected", KNOWN)
def test_known_tokenisations(line, expected):
    assert tokenize_lines([line]) == [expected]


def test_trailing_context_crosses_line_ends():
    # "U.S." before a line starting "The " ends the sentence (the period is repeated); at the very
    # end of the text it does not. An abbreviation like "Inc." repeats its period either way.
    assert tokenize_lines(["He lives in the U.S.", "The end"]) == ["he lives in the u.s. .", "the end"]
    assert tokenize_lines(["He lives in the U.S."]) == ["he lives in the u.s."]
    assert tokenize_lines(["It is Inc.", "Next"]) == ["it is inc. .", "next"]
    assert tokenize_lines(["", "a", ""]) == ["", "a", ""]


def test_coco_filter_and_routes():
    assert python_tokenize("Blue Spice is a coffee shop, less than £20.") == "blue spice is a coffee shop less than # 20"
    assert python_tokenize("(It's) 5 -- stars...") == "-lrb- it 's -rrb- 5 stars"
    tokenizer = PTBTokenizer(route="python")
    assert tokenizer.tokenize(["A dog.", "a\nb"]) == ["a dog", "a b"]  # a line break inside a sentence is a space
    with pytest.raises(ValueError):
        PTBTokenizer(route="perl")


def _e2e_batches(metrics_cases):
    """The sentence lists the E2E scorer hands the tokenizer: references then outputs, deduplicated."""
    case = metrics_cases / "e2e"
    pairs = [(case / "example-inputs" / "devel-conc.txt", case / "example-inputs" / "baseline-output.txt")]
    pairs += [(case / "test" / "references_multi.txt", case / "test" / "systems" / f"{s}.txt")
              for s in ("tgen", "sheff1", "dangnt")]
    for refs_path, hyps_path in pairs:
        _, refs, hyps = load_data(refs_path, hyps_path)
        sentences = [r for group in refs for r in group] + list(hyps)
        yield list(dict.fromkeys(_LINE_BREAKS.sub(" ", s) for s in sentences))


@requires_java
def test_equals_jar_on_every_e2e_case_sentence(metrics_cases):
    total = 0
    for batch in _e2e_batches(metrics_cases):
        jar, ours = run_ptb_jar(batch), tokenize_lines(batch)
        differing = [(s, a, b) for s, a, b in zip(batch, jar, ours) if a != b]
        assert not differing, differing[:3]
        total += len(batch)
    assert total > 15000


def _random_lines(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    pieces = ("the The Mr. U.S. Inc. Co. Jan. no. No. e.g. a.m. I. A. can't won't it's 's n't o'clock O'Brien "
              "y'all '90s cannot gonna 3.5 1,000 20-25 1/2 555-1234 (555) £20 $5 € ... . . . -- --- - — – \" `` "
              "'' “ ” ‘ ’ ( ) [ ] { } <b> </b> &amp; &quot; AT&T http://x.org/a www.y.com a@b.com @u #t :) ^_^ "
              "c++ C# co-op U.S.-based Calif. Az. Pa. naïve café İstanbul \u00ad \u200b \x7f ½ ² % * / = _ ! ? ; :"
              ).split()
    chars = "aAbBeEiInNsStTuUxXyYzZ09 .,;:!?'\"`-_/\\()[]{}<>@#$%&*+=~^|\t\u00a0\u00ad£€½²…–—“”‘’«»é"
    lines = []
    for _ in range(count):
        if rng.random() < 0.5:
            seps = (" ", " ", "", ", ", ". ", "\t", "\u00a0", "-", "'", '"', "/", ".")
            lines.append("".join(rng.choice(pieces) + rng.choice(seps) for _ in range(rng.randint(0, 10))))
        else:
            lines.append("".join(rng.choice(chars) for _ in range(rng.randint(0, 40))))
    return lines


@requires_java
@pytest.mark.parametrize("seed", [1, 2])
def test_equals_jar_on_random_text(seed):
    lines = _random_lines(seed, 2000)
    jar, ours = run_ptb_jar(lines), tokenize_lines(lines)
    differing = [(s, a, b) for s, a, b in zip(lines, jar, ours) if a != b]
    assert not differing, differing[:3]
