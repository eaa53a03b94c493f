"""Readers, formatted/encoded layers and the synthetic set.

Every expected string and id list below was copied from the output of microsoft/LoRA's own
``format_converting_{e2e,webnlg,dart}.py`` + ``gpt2_encode.py --add_bos --add_eos`` run on ../shared/data
(the line of upstream's output is named next to each); the inputs are the matching source records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from gpt2_lora import data
from gpt2_lora.errors import UserError
from helpers import write_text

# e2e/train.txt line 1 -> upstream train_formatted.jsonl / train.jsonl line 1
E2E_SOURCE = ("name : The Vaults | Type : pub | price : more than £ 30 | customer rating : 5 out of 5 | "
              "near : Café Adriatic||The Vaults pub near Café Adriatic has a 5 star rating . "
              "Prices start at £ 30 . \n")
E2E_FORMATTED = ('{"context": "name : The Vaults | Type : pub | price : more than \\u00a3 30 | customer rating : '
                 '5 out of 5 | near : Caf\\u00e9 Adriatic", "completion": "The Vaults pub near Caf\\u00e9 Adriatic '
                 'has a 5 star rating . Prices start at \\u00a3 30 ."}\n')
E2E_ENCODED = ('{"context": [3672, 1058, 383, 21314, 930, 5994, 1058, 2240, 930, 2756, 1058, 517, 621, 4248, 1542, '
               '930, 6491, 7955, 1058, 642, 503, 286, 642, 930, 1474, 1058, 42151, 1215, 380, 1512, 50256], '
               '"completion": [383, 21314, 2240, 1474, 42151, 1215, 380, 1512, 468, 257, 642, 3491, 7955, 764, '
               '29431, 923, 379, 4248, 1542, 764, 50256]}\n')

# webnlg train.json entry 2010 (3 lexicalisations, the 3rd "toFix") -> upstream train lines 4924-4925;
# test.json entry 1301 (category Artist: unseen) -> upstream test line 3318
WEBNLG_TRAIN_ENTRY = {
    "category": "Astronaut", "dbpedialinks": [],
    "lexicalisations": [
        {"comment": "good", "lang": "", "xml_id": "Id1", "lex": "Alan Shepard's Distinguished Service Medal from the "
         "U.S. Navy ranks higher than Department of Commerce Gold Medal."},
        {"comment": "good", "lang": "", "xml_id": "Id2", "lex": "Alan Shepard was the recipient of the Distinguished "
         "Service Medal in the United States Navy and this is a medal that is ranked higher than Department of "
         "Commerce Gold Medal."},
        {"comment": "toFix", "lang": "", "xml_id": "Id3", "lex": "in the higher rank of Department of Commerce Gold "
         "Medal Alan Shepard got one of the Distinguished Service Medal of United States Navy."}],
    "links": [],
    "modifiedtripleset": [
        {"object": "Department_of_Commerce_Gold_Medal", "property": "higher",
         "subject": "Distinguished_Service_Medal_(United_States_Navy)"},
        {"object": "Distinguished_Service_Medal_(United_States_Navy)", "property": "awards",
         "subject": "Alan_Shepard"}],
    "shape": "NA", "shape_type": "NA", "size": "2", "xml_id": "Id29",
}
WEBNLG_TRAIN_CONTEXT = ("Distinguished_Service_Medal_(United_States_Navy) : higher : Department_of_Commerce_Gold_Medal"
                        " | Alan_Shepard : awards : Distinguished_Service_Medal_(United_States_Navy)")
WEBNLG_TRAIN_CONTEXT_IDS = [
    20344, 46709, 62, 16177, 62, 9921, 282, 41052, 17013, 62, 42237, 62, 45, 2830, 8, 1058, 2440, 1058, 2732, 62,
    1659, 62, 47662, 62, 13306, 62, 9921, 282, 930, 12246, 62, 3347, 26037, 1058, 13304, 1058, 4307, 46709, 62, 16177,
    62, 9921, 282, 41052, 17013, 62, 42237, 62, 45, 2830, 8, 50256]
WEBNLG_TRAIN_COMPLETION_IDS = [
    [12246, 28606, 338, 4307, 46709, 4809, 9064, 422, 262, 471, 13, 50, 13, 8565, 9803, 2440, 621, 2732, 286, 16127,
     3561, 9064, 13, 50256],
    [12246, 28606, 373, 262, 17800, 286, 262, 4307, 46709, 4809, 9064, 287, 262, 1578, 1829, 8565, 290, 428, 318, 257,
     18279, 326, 318, 10307, 2440, 621, 2732, 286, 16127, 3561, 9064, 13, 50256]]
WEBNLG_TEST_ENTRY = {
    "category": "Artist", "dbpedialinks": [],
    "lexicalisations": [{"comment": "good", "lang": "", "xml_id": "Id1",
                         "lex": "Alfredo Zitarrosa was born in Montevideo and died in Uruguay."}],
    "links": [],
    "modifiedtripleset": [{"object": "Uruguay", "property": "deathPlace", "subject": "Alfredo_Zitarrosa"},
                          {"object": "Montevideo", "property": "birthPlace", "subject": "Alfredo_Zitarrosa"}],
    "shape": "NA", "shape_type": "NA", "size": "2", "xml_id": "Id1301",
}
WEBNLG_TEST_FORMATTED = ('{"context": "Alfredo_Zitarrosa : deathPlace : Uruguay | Alfredo_Zitarrosa : birthPlace : '
                         'Montevideo", "completion": "Alfredo Zitarrosa was born in Montevideo and died in Uruguay.", '
                         '"cate": false}\n')

# dart-v1.1.1-full-dev.json entry 0 -> upstream valid lines 1; an annotation-less test entry gives nothing
DART_ENTRIES = [
    {"tripleset": [["Mars Hill College", "JOINED", "1973"],
                   ["Mars Hill College", "LOCATION", "Mars Hill, North Carolina"]],
     "subtree_was_extended": True,
     "annotations": [{"source": "WikiSQL_decl_sents",
                      "text": "A school from Mars Hill, North Carolina, joined in 1973."}]},
    {"tripleset": [["Abilene Regional Airport", "CITY_SERVED", "Abilene, Texas"]],
     "subtree_was_extended": False, "annotations": []},
]
DART_FORMATTED = ('{"context": "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill, North '
                  'Carolina", "completion": "A school from Mars Hill, North Carolina, joined in 1973."}\n')
DART_ENCODED = ('{"context": [43725, 3327, 5535, 1058, 5399, 1058, 15674, 930, 8706, 3327, 5535, 1058, 4067, 1058, '
                '8706, 3327, 11, 2258, 5913, 50256], "completion": [317, 1524, 422, 8706, 3327, 11, 2258, 5913, 11, '
                '5399, 287, 15674, 13, 50256]}\n')


def _webnlg_json(*entries) -> str:
    # the layout of the real files (b2json): entries[i] = {str(i+1): entry}, ensure_ascii=False, indent=4
    return json.dumps({"entries": [{str(i + 1): e} for i, e in enumerate(entries)]},
                      ensure_ascii=False, indent=4, sort_keys=True)


# ------------------------------------------------------------------------------------------- hand-checked
def test_e2e_formatted_matches_upstream(tmp_path):
    examples = data.read_e2e(write_text(tmp_path / "train.txt", E2E_SOURCE))
    assert examples == [data.Example(
        "name : The Vaults | Type : pub | price : more than £ 30 | customer rating : 5 out of 5 | "
        "near : Café Adriatic",
        "The Vaults pub near Café Adriatic has a 5 star rating . Prices start at £ 30 .")]  # trailing space gone
    assert data.formatted_line(examples[0]) == E2E_FORMATTED


def test_e2e_line_handling_as_upstream(tmp_path):
    # upstream strips the whole line (leading spaces of the MR, trailing ones of the reference) and reads
    # in text mode, so CRLF / CR line ends are line ends and a missing final newline is fine
    src = write_text(tmp_path / "x.txt", b"  a : b||ref one . \r\nc : d|| ref two .\re : f||ref three")
    got = [(ex.context, ex.completion) for ex in data.read_e2e(src)]
    assert got == [("a : b", "ref one ."), ("c : d", " ref two ."), ("e : f", "ref three")]


def test_webnlg_formatted_matches_upstream(tmp_path):
    train = data.read_webnlg(write_text(tmp_path / "train.json", _webnlg_json(WEBNLG_TRAIN_ENTRY)))
    assert [ex.context for ex in train] == [WEBNLG_TRAIN_CONTEXT] * 2  # the "toFix" one is dropped
    assert [ex.cate for ex in train] == [True, True]
    assert [ex.completion for ex in train] == [lex["lex"] for lex in WEBNLG_TRAIN_ENTRY["lexicalisations"][:2]]
    test = data.read_webnlg(write_text(tmp_path / "test.json", _webnlg_json(WEBNLG_TEST_ENTRY)))
    assert data.formatted_line(test[0]) == WEBNLG_TEST_FORMATTED


def test_dart_formatted_matches_upstream(tmp_path):
    examples = data.read_dart(write_text(tmp_path / "dev.json", json.dumps(DART_ENTRIES, indent=2)))
    assert [data.formatted_line(ex) for ex in examples] == [DART_FORMATTED]


def test_encoded_layer_matches_upstream(tokenizer):
    e2e = data.Example(*json.loads(E2E_FORMATTED).values())
    dart = data.Example(*json.loads(DART_FORMATTED).values())
    web = [data.Example(WEBNLG_TRAIN_CONTEXT, lex["lex"], True) for lex in WEBNLG_TRAIN_ENTRY["lexicalisations"][:2]]
    encoded = data.encode_examples([e2e, dart, *web], tokenizer, chunk=3)  # chunk < #strings: several batches
    assert data.encoded_line(*encoded[0]) == E2E_ENCODED
    assert data.encoded_line(*encoded[1]) == DART_ENCODED
    assert [c for c, _ in encoded[2:]] == [WEBNLG_TRAIN_CONTEXT_IDS] * 2
    assert [x for _, x in encoded[2:]] == WEBNLG_TRAIN_COMPLETION_IDS


def test_read_formatted_roundtrip(tmp_path):
    path = write_text(tmp_path / "f.jsonl", E2E_FORMATTED + WEBNLG_TEST_FORMATTED)
    got = data.read_formatted(path)
    assert got[0].completion.endswith("Prices start at £ 30 .") and got[0].cate is None
    assert got[1].cate is False
    assert "".join(map(data.formatted_line, got)) == E2E_FORMATTED + WEBNLG_TEST_FORMATTED


@pytest.mark.parametrize("body, message", [
    ('{"context": "a", "completion": "b"}\n\n{"context": "c", "completion": "d"}\n', r"f\.jsonl:2: bad JSON"),
    ('{"context": "a"}\n', r"f\.jsonl:1: missing key 'completion'"),
    ('{"context": "a", "completion": "b", "cate": "yes"}\n', r"f\.jsonl:1\.cate: expected bool"),
    ("", r"f\.jsonl: empty file"),
])
def test_read_formatted_keeps_line_numbers_and_refuses_bad_lines(tmp_path, body, message):
    # a skipped blank line would shift every later record off the beam output's line ids
    path = tmp_path / "f.jsonl"
    path.write_text(body)
    with pytest.raises(UserError, match=message):
        data.read_formatted(path)


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("body, message", [
    ("a : b||ok .\nno separator here\n", ":2: no '||'"),
    ("a : b||ok .\n\nc : d||ok .\n", ":2: empty line"),
    ("a : b||one||two\n", ":1: more than one '||'"),
])
def test_e2e_bad_lines(tmp_path, body, message):
    path = write_text(tmp_path / "train.txt", body)
    with pytest.raises(UserError, match=f"train.txt{message}"):
        data.read_e2e(path)


def test_non_utf8_names_the_line(tmp_path):
    path = write_text(tmp_path / "valid.txt", b"a : b||ok .\na : \xff||bad .\n")
    with pytest.raises(UserError, match=r"valid\.txt:2: not valid UTF-8"):
        data.read_e2e(path)


@pytest.mark.parametrize("reader", [data.read_e2e, data.read_webnlg, data.read_dart])
def test_empty_and_missing_files(tmp_path, reader):
    with pytest.raises(UserError, match="empty file"):
        reader(write_text(tmp_path / "empty", " \n"))
    with pytest.raises(UserError, match="not found"):
        reader(tmp_path / "absent")


@pytest.mark.parametrize("reader, text, message", [
    (data.read_webnlg, '{"entries": [\n{"1": {}\n]}', r"x\.json:3:1: bad JSON"),
    (data.read_webnlg, '{"entries": [{"2": {}}]}', r"entries\[0\]: missing key '1'"),
    (data.read_webnlg, '{"entries": [{"1": {"category": "City", "modifiedtripleset": [], "lexicalisations": '
                       '[{"comment": "good"}]}}]}', r"lexicalisations\[0\]: missing key 'lex'"),
    (data.read_webnlg, '{"entries": [{"1": {"category": "City", "modifiedtripleset": [{"subject": "a"}], '
                       '"lexicalisations": []}}]}', r"modifiedtripleset\[0\]: missing key 'property'"),
    (data.read_webnlg, '{"entries": [{"1": {"category": "City", "modifiedtripleset": [], "lexicalisations": '
                       '[{"comment": "bad", "lex": "x"}]}}]}', "no examples"),
    (data.read_webnlg, '[]', "top level: expected a JSON object"),
    (data.read_dart, '{"tripleset": []}', "expected a JSON list"),
    (data.read_dart, '[{"tripleset": [["a", "b"]], "annotations": []}]', r"\[0\]\.tripleset\[0\]: expected \[subject"),
    (data.read_dart, '[{"tripleset": [], "annotations": [{"text": 3}]}]', r"annotations\[0\]\.text: expected str"),
    (data.read_dart, '[{"annotations": []}]', r"\[0\]: missing key 'tripleset'"),
])
def test_json_bad_input(tmp_path, reader, text, message):
    with pytest.raises(UserError, match=message):
        reader(write_text(tmp_path / "x.json", text))


def test_missing_split_is_named(tmp_path):
    write_text(tmp_path / "train.json", "[]")
    write_text(tmp_path / "dev.json", "[]")
    with pytest.raises(UserError, match="missing webnlg split file.*test.json"):
        data.source_paths("webnlg", tmp_path)


def test_source_paths_accept_a_data_root(tmp_path):
    (tmp_path / "dart").mkdir()
    for name in data.SOURCE_FILES["dart"].values():
        write_text(tmp_path / "dart" / name, "[]")
    paths = data.source_paths("dart", tmp_path)
    assert paths["valid"] == tmp_path / "dart" / "dart-v1.1.1-full-dev.json"


# ----------------------------------------------------------------------------------------------- real data
def test_real_counts(shared_data):
    counts = {task: {split: data.READERS[task](path) for split, path in data.source_paths(task, shared_data).items()}
              for task in data.READERS}
    sizes = {task: [len(counts[task][s]) for s in data.SPLITS] for task in counts}
    assert sizes == {"e2e": [42061, 4672, 4693], "webnlg": [18025, 2258, 4928], "dart": [62659, 6980, 12552]}
    assert len({ex.context for ex in counts["e2e"]["test"]}) == 630
    assert len({ex.context for ex in counts["e2e"]["valid"]}) == 547
    assert Counter(ex.cate for ex in counts["webnlg"]["test"]) == {True: 2495, False: 2433}
    assert all(ex.cate is None for ex in counts["dart"]["test"])


# ----------------------------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_e2e_like(tmp_path):
    sizes = {"train": 60, "valid": 10, "test": 5}
    first = data.synthetic_source(sizes, seed=3)
    assert first == data.synthetic_source(sizes, seed=3)
    assert first != data.synthetic_source(sizes, seed=4)
    mrs = {split: [line.split("||")[0] for line in lines] for split, lines in first.items()}
    assert {s: len(set(m)) for s, m in mrs.items()} == sizes  # contexts per split as asked
    assert not (set(mrs["train"]) & set(mrs["test"])) and not (set(mrs["train"]) & set(mrs["valid"]))
    used = set()
    for split, lines in first.items():
        assert all(1 <= n <= 3 for n in Counter(mrs[split]).values())
        for line in lines:
            mr, ref = line.split("||")
            assert ref.endswith(" . ")  # E2E references end with a space
            keys = [field.split(" : ")[0] for field in mr.split(" | ")]
            assert keys[0] == "name" and len(keys) >= 3
            assert keys == sorted(keys, key=data.ATTRIBUTES.index)  # E2E attribute order
            used.update(keys)
            for field in mr.split(" | "):
                key, value = field.split(" : ")
                if key in ("name", "Type", "price", "customer rating", "area", "near"):
                    assert value in ref, (value, ref)  # every value is verbalised verbatim
    assert used == set(data.ATTRIBUTES) == {"name", "Type", "food", "price", "customer rating", "area",
                                            "family friendly", "near"}


def test_synthetic_reads_back_as_e2e(tmp_path):
    lines = data.synthetic_source({"train": 5, "valid": 2, "test": 2}, seed=0)["train"]
    path = write_text(tmp_path / "train.txt", "".join(line + "\n" for line in lines))
    examples = data.read_e2e(path)
    assert [ex.context + "||" + ex.completion + " " for ex in examples] == lines


def test_synthetic_reference_by_hand():
    mr = {"name": "The Crown", "Type": "pub", "food": "Fast food", "price": "£ 20 - 25", "family friendly": "no"}
    assert data.synthetic_mr_string(mr) == ("name : The Crown | Type : pub | food : Fast food | price : £ 20 - 25 | "
                                            "family friendly : no")
    assert data.synthetic_reference(mr, 0) == ("The Crown is a pub serving fast food . Its price range is £ 20 - 25 . "
                                                "It is not family - friendly . ")
    assert data.synthetic_reference(mr, 2) == ("The Crown is a pub with fast food . This pub is not family - "
                                                "friendly . Prices are £ 20 - 25 . ")


def test_synthetic_same_in_another_process():
    # no dependence on hash randomisation or other process state
    code = "from gpt2_lora import data; print(repr(data.synthetic_source({'train': 30, 'valid': 3, 'test': 3}, 7)))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == repr(data.synthetic_source({"train": 30, "valid": 3, "test": 3}, 7))


def test_read_encoded_errors(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"context": [1, 2], "completion": [3]}) + "\n")
    assert data.read_encoded(good) == [([1, 2], [3])]
    cases = {
        "bad.jsonl": (json.dumps({"context": [1], "completion": [2]}) + "\n{oops\n", ":2: bad JSON"),
        "formatted.jsonl": (json.dumps({"context": "a | b", "completion": "text"}) + "\n", "list of token ids"),
        "empty.jsonl": ("", "no examples"),
        "blanks.jsonl": ("\n \n", "no examples"),
        "gap.jsonl": (json.dumps({"context": [1], "completion": [2]}) + "\n\n" + json.dumps(
            {"context": [1], "completion": [2]}) + "\n", ":2: empty line"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=message):
            data.read_encoded(tmp_path / name)
    with pytest.raises(UserError, match="not found"):
        data.read_encoded(tmp_path / "missing.jsonl")
    (tmp_path / "trailing.jsonl").write_text(good.read_text() + "\n\r\n")  # blank lines after the last record
    assert data.read_encoded(tmp_path / "trailing.jsonl") == [([1, 2], [3])]
