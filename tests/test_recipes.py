"""gpt2_lora.recipes against what the paper and the upstream README state, and no recipe value in a shell script."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from gpt2_lora import recipes
from gpt2_lora.errors import UserError

# microsoft/LoRA examples/NLG/README.md, "Replicating Our Result on E2E": step 1 (gpt2_ft.py), without its data,
# model, checkpoint, launcher and work-dir flags ...
README_TRAIN = ("--train_batch_size 8 --grad_acc 1 --valid_batch_size 4 --seq_len 512 --clip 0.0 --lr 0.0002 "
                "--weight_decay 0.01 --correct_bias --adam_beta2 0.999 --scheduler linear --warmup_step 500 "
                "--max_epoch 5 --save_interval 1000 --lora_dim 4 --lora_alpha 32 --lora_dropout 0.1 "
                "--label_smooth 0.1 --random_seed 110")
# ... and step 2 (gpt2_beam.py), without its data, model and output flags
README_BEAM = ("--batch_size 1 --seq_len 512 --eval_len 64 --beam 10 --length_penalty 0.8 --no_repeat_ngram_size 4 "
               "--repetition_penalty 1.0 --eos_token_id 628")
README_INIT_CHECKPOINT = "./pretrained_checkpoints/gpt2-medium-pytorch_model.bin"  # with --model_card gpt2.md
README_OUTPUT_TAG = "b10p08r4"  # predict.26289.b10p08r4.jsonl
# the paper's Table 11: what differs between the tasks (weight decay, dropout, label smoothing, length penalty)
TABLE_11 = {"e2e": (0.01, 0.1, 0.1, 0.9), "webnlg": (0.01, 0.1, 0.1, 0.8), "dart": (0.0, 0.0, 0.0, 0.8)}
# the README's decode and evaluation commands per task; WebNLG's report has the paper's U/S/A columns
SCORING = {"e2e": ("measure_scores.py", ("-p",), [], ("all",)),
           "webnlg": ("eval.py", ("-nr", "6", "-m", "bleu,meteor,ter"),
                      ["--ref_type", "webnlg", "--ref_num", "6", "--tokenize", "--lower"], ("all", "seen", "unseen")),
           "dart": ("eval.py", ("-nr", "6", "-m", "bleu,meteor,ter"),
                    ["--ref_type", "dart", "--ref_num", "6", "--tokenize", "--lower"], ("all",))}
DATA = {"e2e": ("e2e", "train.txt"), "webnlg": ("webnlg_challenge_2017", "train.json"),
        "dart": ("dart", "dart-v1.1.1-full-train.json")}
HF = {"gpt2.sm": ("gpt2", "S"), "gpt2.md": ("gpt2-medium", "M"), "gpt2.lg": ("gpt2-large", "L")}


def as_dict(flags: list[str]) -> dict[str, str | bool]:
    out, i = {}, 0
    while i < len(flags):
        if i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            out[flags[i]], i = flags[i + 1], i + 2
        else:
            out[flags[i]], i = True, i + 1
    return out


@pytest.mark.parametrize("task", ["e2e", "webnlg", "dart"])
def test_training_recipe_is_the_readme_command_with_table_11s_differences(task):
    weight_decay, dropout, smooth, _ = TABLE_11[task]
    expected = {**as_dict(README_TRAIN.split()), "--weight_decay": str(weight_decay), "--lora_dropout": str(dropout),
                "--label_smooth": str(smooth)}
    assert as_dict(recipes.TASKS[task].train.train_flags()) == expected


@pytest.mark.parametrize("task", ["e2e", "webnlg", "dart"])
def test_decoding_is_the_readme_command_and_table_11s_length_penalty(task):
    decodes = recipes.TASKS[task].decodes
    assert decodes[0].beam_flags() == README_BEAM.split()  # the headline report: the README's setting
    assert decodes[0].tag == README_OUTPUT_TAG
    assert TABLE_11[task][3] in {d.length_penalty for d in decodes}
    assert [d.length_penalty for d in decodes] == sorted({0.8, TABLE_11[task][3]})
    if task == "e2e":
        assert [d.tag for d in decodes] == ["b10p08r4", "b10p09r4"]


@pytest.mark.parametrize("task", ["e2e", "webnlg", "dart"])
def test_scoring_data_and_report_task(task):
    recipe = recipes.TASKS[task]
    scorer, flags, decode_flags, filters = SCORING[task]
    assert (recipe.score.scorer, recipe.score.scorer_flags, recipe.score.filters) == (scorer, flags, filters)
    assert [f for f in recipe.score.decode_flags("all") if f not in ("--filter", "all")] == decode_flags
    assert (recipe.data_dir, recipe.raw_file) == DATA[task]
    assert recipe.report_task == recipe.prepare_task == task
    assert (ROOT / "eval" / scorer).is_file()


def test_cards():
    assert {name: (c.hf_name, c.size) for name, c in recipes.CARDS.items()} == HF
    assert "./" + recipes.CARDS["gpt2.md"].pretrained_file == README_INIT_CHECKPOINT
    assert recipes.card("lg") is recipes.CARDS["gpt2.lg"]
    with pytest.raises(UserError, match="unknown model card 'xl'"):
        recipes.card("xl")


def test_recipes_are_frozen():
    with pytest.raises(AttributeError):
        recipes.E2E.train.lr = 1.0


def test_cli(capsys):
    assert recipes.main(["train-flags", "dart"]) == 0
    assert capsys.readouterr().out.split() == recipes.DART.train.train_flags()
    for argv, printed in ((["hf-name", "md"], "gpt2-medium"), (["data-dir", "webnlg"], "webnlg_challenge_2017"),
                          (["value", "e2e", "train.lora_alpha"], "32"), (["length-penalties", "e2e"], "0.8 0.9"),
                          (["beam-flags", "webnlg"], README_BEAM)):
        assert recipes.main(argv) == 0
        assert capsys.readouterr().out.strip() == printed
    for argv, message in ((["train-flags", "translate"], "TASK must be e2e, webnlg or dart, got 'translate'"),
                          (["value", "e2e", "train.nope"], "no setting 'train.nope'"), (["frobnicate"], "invalid choice")):
        with pytest.raises(SystemExit) as exit_info:
            recipes.main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err


def _code_lines(path):
    return [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if not line.lstrip().startswith("#")]


def test_no_shell_script_holds_a_recipe_value():
    """Every --flag value of the paper's recipes, the cards' file names and the data folders are written in
    recipes.py only: the shell scripts ask it (download_data.sh's file manifest, with hashes, names folders)."""
    patterns = set()
    for recipe in recipes.TASKS.values():
        for flags in (recipe.train.train_flags(), *(d.beam_flags() for d in recipe.decodes)):
            for flag, value in as_dict(flags).items():
                patterns.add(re.escape(flag) + (r"(\s|$)" if value is True else rf"[ =]{re.escape(value)}\b"))
        patterns.add(rf"\b{re.escape(recipe.data_dir)}\b" if recipe.data_dir != recipe.name else r"data/e2e\b")
    patterns |= {rf"\b{re.escape(c.hf_name)}-pytorch_model" for c in recipes.CARDS.values()}
    patterns |= {r"\bname=gpt2\b", r"gpt2\.md\) *\w+=gpt2-medium"}
    found = [f"{path.name}:{n}: {line.strip()}" for path in sorted((ROOT / "scripts").glob("*.sh"))
             if path.name != "download_data.sh" for n, line in _code_lines(path)
             if any(re.search(p, line) for p in patterns)]
    assert not found, "\n".join(found)


def test_your_own_data_gets_e2es_recipe_and_metrics_plus_sacrebleu():
    custom = recipes.task("custom")
    assert custom is recipes.CUSTOM and "custom" not in recipes.TASKS  # not one of the paper's tasks
    assert custom.train == recipes.E2E.train and custom.decodes == (recipes.E2E.headline,)
    assert (custom.score.kind, custom.score.scorer, custom.score.scorer_flags) == ("e2e", "measure_scores.py",
                                                                                 ("-p", "--sacrebleu"))
    assert (custom.prepare_task, custom.report_task, custom.data_dir) == ("custom", "custom", ".")
    with pytest.raises(UserError, match="got 'mine' \\(or custom, for your own data\\)"):
        recipes.task("mine")
