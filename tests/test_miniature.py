"""The miniature experiment (gpt2_lora/miniature.py) end to end on the CPU with ``--budget tiny``.

Data: synthetic E2E-style source files, and small WebNLG- and DART-shaped files written here, so that
the corpus rules can be checked exactly: the DART file holds E2E-sourced annotations (which must never
reach the corpus) and a WebNLG-sourced text that is also a WebNLG test text, written with DART's HTML
escape (which must be found and dropped too).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from gpt2_lora import data, miniature, miniature_report
from gpt2_lora.errors import UserError
from gpt2_lora.miniature_corpus import build_corpus, normalise_text
from gpt2_lora.miniature_stages import recipe_flags

SEEN, UNSEEN = "Airport", "Athlete"  # a training category of WebNLG 2017 and one that is not
TEST_TEXT = "Aarhus Airport & runway 10R/28L serve Aarhus."  # also in DART, escaped as &amp;
E2E_TEXTS = ("The Eagle is a cheap coffee shop near Burger King .", "Zizzi is a pub .")


def webnlg_entry(i: int, category: str, triples: list[tuple[str, str, str]], texts: list[str]) -> dict:
    return {str(i + 1): {"category": category,
                         "modifiedtripleset": [{"subject": s, "property": p, "object": o} for s, p, o in triples],
                         "lexicalisations": [{"comment": "good", "lex": t, "lang": "", "xml_id": f"Id{j}"}
                                             for j, t in enumerate(texts)]}}


def webnlg_split(n: int, offset: int, categories: tuple[str, ...]) -> dict:
    entries = []
    for i in range(n):
        k = i + offset
        cat = categories[i % len(categories)]
        triples = [(f"Place_{k}", "country", f"Land {k % 7}"), (f"Place_{k}", "elevation", f"{k * 3} m")]
        texts = [f"Place {k} lies in Land {k % 7} at {k * 3} metres .",
                 f"At {k * 3} m , Place {k} is in Land {k % 7} ."]
        entries.append(webnlg_entry(i, cat, triples, texts))
    return {"entries": entries}


def dart_split(n: int, offset: int) -> list[dict]:
    entries = [{"tripleset": [["The Eagle", "eatType", "coffee shop"]],
                "annotations": [{"source": "e2e", "text": t} for t in E2E_TEXTS]},
               {"tripleset": [["Aarhus Airport", "CITY_SERVED", "Aarhus"]], "subtree_was_extended": False,
                "annotations": [{"source": "webnlg", "text": TEST_TEXT.replace("&", "&amp;")},
                                {"source": "webnlg", "text": "Aarhus Airport serves the city of Aarhus ."}]}]
    for i in range(n):
        k = i + offset
        text = f"Team {k} plays in League {k % 5} ."
        entries.append({"tripleset": [[f"Team {k}", "LEAGUE", f"League {k % 5}"]], "subtree_was_extended": False,
                        "annotations": [{"source": "WikiSQL_decl_sents", "text": text}]})
    return entries


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, vocab_dir) -> Path:
    root = tmp_path_factory.mktemp("miniature_data")
    (root / "gpt2").symlink_to(vocab_dir, target_is_directory=True)
    e2e = root / "e2e"
    e2e.mkdir()
    for split, lines in data.synthetic_source({"train": 120, "valid": 8, "test": 6}, seed=3).items():
        (e2e / data.SOURCE_FILES["e2e"][split]).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    webnlg = root / "webnlg_challenge_2017"
    webnlg.mkdir()
    test = webnlg_split(6, 500, (SEEN, UNSEEN))
    test["entries"].append(webnlg_entry(6, SEEN, [("Aarhus_Airport", "cityServed", "Aarhus")], [TEST_TEXT]))
    for name, split in (("train.json", webnlg_split(60, 0, (SEEN,))), ("dev.json", webnlg_split(6, 300, (SEEN,))),
                        ("test.json", test)):
        (webnlg / name).write_text(json.dumps(split), encoding="utf-8")
    dart = root / "dart"
    dart.mkdir()
    for split, (n, offset) in {"train": (40, 0), "valid": (5, 100), "test": (5, 200)}.items():
        (dart / data.SOURCE_FILES["dart"][split]).write_text(json.dumps(dart_split(n, offset)), encoding="utf-8")
    return root


def test_corpus_leaves_out_e2e_and_webnlg_test_texts(tiny_data, tmp_path):
    stats = build_corpus(tiny_data, tmp_path / "corpus", tiny_data / "gpt2", valid_max=1000)
    assert (stats.dart_train, stats.dart_e2e_dropped, stats.dart_webnlg) == (44, 2, 2)
    assert stats.dart_webnlg_test_overlap_dropped == 1  # found through DART's &amp;
    assert stats.webnlg_train == 120 and stats.train_examples == 120 + 44 - 2 - 1
    from gpt2_lora.tokenizer import Tokenizer

    tokenizer = Tokenizer(tiny_data / "gpt2")
    texts = [tokenizer.decode(json.loads(line)["completion"])
             for line in (tmp_path / "corpus" / "train.jsonl").read_text().splitlines()]
    assert len(texts) == stats.train_examples
    assert not any(t in text for text in texts for t in (*E2E_TEXTS, "The Eagle", "Aarhus Airport &"))
    assert any("serves the city of Aarhus" in text for text in texts)  # other WebNLG-sourced text stays
    contexts = [tokenizer.decode(json.loads(line)["context"])
                for line in (tmp_path / "corpus" / "valid.jsonl").read_text().splitlines()]
    assert not any("eattype" in c.lower() for c in contexts) and len(contexts) == 12 + 5 + 1
    assert normalise_text(" a &amp;  b\n") == "a & b"


def test_corpus_needs_dart_sources(tiny_data, tmp_path):
    root = tmp_path / "data"
    (root / "dart").mkdir(parents=True)
    (root / "webnlg_challenge_2017").symlink_to(tiny_data / "webnlg_challenge_2017", target_is_directory=True)
    entries = dart_split(2, 0)
    for entry in entries:
        for annotation in entry["annotations"]:
            del annotation["source"]
    for name in data.SOURCE_FILES["dart"].values():
        (root / "dart" / name).write_text(json.dumps(entries), encoding="utf-8")
    with pytest.raises(UserError, match=r"annotations\[0\]: no 'source'"):
        build_corpus(root, tmp_path / "corpus", tiny_data / "gpt2")
    assert not (tmp_path / "corpus").exists()


def test_recipe_comes_from_the_recipes():
    flags = recipe_flags("e2e")
    values = {f: flags[flags.index(f) + 1] for f in ("--lr", "--lora_alpha", "--lora_dropout", "--label_smooth",
                                                   "--weight_decay", "--warmup_step", "--train_batch_size",
                                                   "--adam_beta2", "--scheduler", "--seq_len")}
    assert values == {"--lr": "0.0002", "--lora_alpha": "32", "--lora_dropout": "0.1", "--label_smooth": "0.1",
                      "--weight_decay": "0.01", "--warmup_step": "500", "--train_batch_size": "8",
                      "--adam_beta2": "0.999", "--scheduler": "linear", "--seq_len": "512"}
    assert "--correct_bias" in flags
    for own in ("--max_epoch", "--random_seed", "--work_dir", "--lora_dim", "--train_data", "--save_interval"):
        assert own not in flags  # the experiment sets these itself
    dart = recipe_flags("dart")  # the per-task values come from the task's recipe
    assert dart[dart.index("--weight_decay") + 1] == "0.0" and dart[dart.index("--label_smooth") + 1] == "0.0"


def test_mean_and_sample_std():
    got = miniature_report.mean_std([1.0, 2.0, 4.0])
    # sample std: sqrt(((1 - 7/3)^2 + (2 - 7/3)^2 + (4 - 7/3)^2) / 2) = sqrt(7/3)
    assert got["n"] == 3 and got["mean"] == pytest.approx(7 / 3) and got["std"] == pytest.approx(math.sqrt(7 / 3))
    assert got["std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert miniature_report.mean_std([0.5, None]) == {"mean": 0.5, "std": None, "n": 1}
    assert miniature_report.mean_std([]) == {"mean": None, "std": None, "n": 0}


def test_plan_puts_the_seed_pairs_before_the_extras():
    names = [r.name for r in miniature.plan(miniature.BUDGETS["full"])]
    assert names == ["none_s110", "ft_s110", "lora4_s110", "ft_s111", "lora4_s111", "ft_s112", "lora4_s112",
                     "lora1_s110", "lora16_s110", "scratch_s110"]


def run_tiny(out: Path, work: Path, data_dir: Path, *extra) -> None:
    code = miniature.main([str(out), "--budget", "tiny", "--device", "cpu", "--data", str(data_dir),
                           "--work", str(work), *map(str, extra)])
    assert code == 0


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    """The whole E2E experiment with --budget tiny, as the GPU machine lacks it: no Java, one CPU thread."""
    import torch

    root = tmp_path_factory.mktemp("miniature_run")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(root))  # no java on the PATH: METEOR n/a, as on the GPU machine
        patch.delenv("JAVA_HOME", raising=False)
        torch.set_num_threads(1)
        try:
            run_tiny(root / "out", root / "work", tiny_data, "--score_workers", "1")
            yield root, patch
        finally:
            torch.set_num_threads(threads)


def test_tiny_experiment_has_every_row_and_the_seed_statistics(tiny_run):
    root, _ = tiny_run
    out, work = root / "out", root / "work"
    result = json.loads((out / "miniature.json").read_text())
    e2e = result["tasks"]["e2e"]
    names = [r.name for r in miniature.plan(miniature.BUDGETS["tiny"])]
    assert [r["name"] for r in e2e["runs"]] == names and e2e["missing"] == []
    rows = {row["arm"]: row for row in e2e["aggregate"]}
    assert list(rows) == list(miniature_report.ARM_ORDER)
    for arm in ("ft", "lora4"):  # each seed's own numbers -> the row's mean and sample std
        runs = [r for r in e2e["runs"] if r["arm"] == arm]
        assert [r["seed"] for r in runs] == [110, 111] == rows[arm]["seeds"]
        losses = [r["valid_loss"] for r in runs]
        assert losses[0] != losses[1] and rows[arm]["valid_loss"] == miniature_report.mean_std(losses)
        for metric in ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"):  # METEOR by the jar or its Python port
            assert rows[arm]["metrics"][metric] == miniature_report.mean_std([r["scores"][metric] for r in runs])
            assert rows[arm]["metrics"][metric]["mean"] is not None
    assert rows["lora4"]["trainable_params"] == 2 * 2 * 4 * (32 + 32)  # q and v: A (4x32), B (32x4); 2 layers
    assert rows["lora1"]["trainable_params"] * 16 == rows["lora16"]["trainable_params"]
    assert rows["ft"]["trainable_params"] == result["base_total_params"] == rows["scratch"]["trainable_params"]
    assert rows["none"]["trainable_params"] == 0 and rows["none"]["steps"] == 0
    assert rows["ft"]["steps"] == 3 and all(r["beam_s"] > 0 for r in e2e["runs"])
    assert result["corpus"]["dart_e2e_dropped"] == 2 and result["base"]["steps"] == 6
    assert result["card"].startswith("cpu") and result["date"]
    assert (work / "base" / "config.json").is_file() and (work / "base" / "model.safetensors").is_file()
    assert not list(work.glob("train/**/model.*")) and not list(work.glob("**/resume.pt"))  # disk given back
    table = (out / "miniature.md").read_text()
    for row in rows.values():
        assert f"| {row['label']} |" in table
    assert sorted(p.name for p in out.iterdir()) == ["miniature.json", "miniature.md", "miniature_inputs.json.gz"]


def test_rerun_skips_finished_runs_and_rescore_reproduces_the_scores(tiny_run, tiny_data, capsys):
    root, _ = tiny_run
    first = json.loads((root / "out" / "miniature.json").read_text())["tasks"]["e2e"]["runs"]
    capsys.readouterr()
    run_tiny(root / "again", root / "work", tiny_data, "--score_workers", "0")
    log = capsys.readouterr().err
    assert "pretraining" not in log and "seed 11" not in log and "gpt2-lora train" not in log
    assert json.loads((root / "again" / "miniature.json").read_text())["tasks"]["e2e"]["runs"] == first

    run_tiny(root / "rescored", root / "work", tiny_data, "--rescore", root / "out")
    rescored = json.loads((root / "rescored" / "miniature.json").read_text())
    assert [r["scores"] for r in rescored["tasks"]["e2e"]["runs"]] == [r["scores"] for r in first]
    assert rescored["rescored"]["date"]


def test_time_limit_leaves_runs_for_a_rerun_then_webnlg_mode(tiny_run, tiny_data):
    root, _ = tiny_run
    out, work = root / "webnlg", root / "work"
    run_tiny(out, work, tiny_data, "--task", "webnlg", "--time_limit", "0.01", "--score_workers", "0")
    webnlg = json.loads((out / "miniature.json").read_text())["tasks"]["webnlg"]
    names = [r.name for r in miniature.plan(miniature.BUDGETS["tiny"])]
    assert webnlg["runs"] == [] and webnlg["missing"] == names
    assert "not run yet" in (out / "miniature.md").read_text()

    run_tiny(out, work, tiny_data, "--task", "webnlg", "--score_workers", "0")  # the same command, no limit
    document = json.loads((out / "miniature.json").read_text())
    webnlg = document["tasks"]["webnlg"]
    assert webnlg["missing"] == [] and [r["name"] for r in webnlg["runs"]] == names
    rows = {r["arm"]: r for r in webnlg["aggregate"]}
    assert set(rows) == set(miniature_report.ARM_ORDER)
    assert set(rows["lora4"]["metrics"]) == set(miniature_report.WEBNLG_METRICS)
    assert "e2e" in document["tasks"]  # the E2E runs of the same work dir stay in the tables
    scored = [r for r in webnlg["runs"] if r["scores"] is not None]
    for run in scored:  # GenerationEval's BLEU (x100) and TER for the seen / unseen / all filters
        assert all(run["scores"][f"{m}-{f}"] is not None for m in ("BLEU", "TER") for f in "SUA")
    assert scored or all("nltk" in r["score_error"].lower() for r in webnlg["runs"])
    with pytest.raises(UserError, match="other settings"):
        miniature.main.__wrapped__([str(out), "--budget", "tiny", "--device", "cpu", "--data", str(tiny_data),
                                    "--work", str(work), "--pretrain_steps", "7"])


def test_script_help_and_bad_flags(tmp_path):
    import subprocess
    import sys

    script = [sys.executable, str(Path(__file__).resolve().parent.parent / "scripts" / "miniature.py")]
    shown = subprocess.run(script + ["--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "--time_limit" in shown.stdout and "--rescore" in shown.stdout
    bad = subprocess.run(script + [str(tmp_path / "out"), "--budget", "huge"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_a_failed_run_is_recorded_and_the_others_still_run(tiny_run, tiny_data, tmp_path, monkeypatch):
    import shutil

    from gpt2_lora import miniature_plan, miniature_stages

    root, _ = tiny_run
    work = tmp_path / "work"
    work.mkdir()
    for name in ("base", "data", "corpus"):  # the finished base of the tiny run: no pretraining here
        shutil.copytree(root / "work" / name, work / name)
    for name in ("base_info.json", "settings.json", "model.json"):
        shutil.copy(root / "work" / name, work / name)
    arms = miniature_plan.ARMS
    monkeypatch.setattr(miniature, "plan", lambda budget: [miniature_plan.Run(arms["ft"], 110),
                                                           miniature_plan.Run(arms["none"], 110)])

    def diverge(*args, **kwargs):
        raise UserError("the training loss is nan at step 2")

    monkeypatch.setattr(miniature_stages, "train_run", diverge)
    run_tiny(tmp_path / "out", work, tiny_data, "--score_workers", "0")
    document = json.loads((tmp_path / "out" / "miniature.json").read_text())
    runs = {r["name"]: r for r in document["tasks"]["e2e"]["runs"]}
    assert runs["ft_s110"]["error"] == "the training loss is nan at step 2" and runs["ft_s110"]["scores"] is None
    assert runs["none_s110"]["scores"]["BLEU"] is not None
    assert "failed (no scores): ft_s110: the training loss is nan" in (tmp_path / "out" / "miniature.md").read_text()
