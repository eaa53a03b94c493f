"""``python -m gpt2_lora.pipeline paper``: the paper's three GPT-2 tables in one command.

    python -m gpt2_lora.pipeline paper [--cards md,lg] [--tasks e2e,webnlg,dart] [--seeds 110,111,112] [options]

Every run (task x card, each with its seeds) goes to ``<work_dir>/<task>_<card>/`` exactly as
``python -m gpt2_lora.pipeline TASK --model_card CARD --work_dir <work_dir>/<task>_<card> [options]`` runs it
(seeds in ``seed<N>/`` below it, and their mean in its report); then ``<work_dir>/paper_report.{md,json}``
(``paper_report.paper_report``) puts each run's headline report beside the paper's LoRA rows of Tables 3
(E2E), 13 (DART) and 14 (WebNLG). The other options are the single-task pipeline's and apply to every run.
``--model_card`` (a card, or a config.json with ``--init_checkpoint``) runs that one model instead of the
cards. The default work dir is ``runs/paper``; a rerun skips what is up to date, the paper report included.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import recipes, stamps
from .errors import UserError
from .pipeline_config import PipelineConfig, comma_list, config_from, project_root
from .stages import say, stage

PAPER_CARDS = {"md": "gpt2.md", "lg": "gpt2.lg"}  # the paper's GPT-2 M and L (it reports no GPT-2 S)


@dataclass(frozen=True)
class PaperConfig:
    work_dir: Path                          # paper_report.* here, each run in <task>_<card>/
    configs: tuple[PipelineConfig, ...]     # one per task x card, in the order they run

    @property
    def stages(self) -> tuple[str, ...]:
        return self.configs[0].stages


def _cards(v: dict) -> list[str]:
    if v["cards"] is not None and v["model_card"] is not None:
        raise UserError("give --cards (the paper's sizes) or --model_card (one model of your own), not both")
    if v["model_card"] is not None:
        return [v["model_card"]]
    cards = [PAPER_CARDS[c] for c in comma_list(v["cards"] or ",".join(PAPER_CARDS), "--cards", tuple(PAPER_CARDS))]
    if len(cards) > 1 and (v["init_checkpoint"] or os.environ.get("GPT2_CKPT")):
        raise UserError("--init_checkpoint (or GPT2_CKPT) names one model's weights, but --cards runs "
                        f"{', '.join(cards)}: run one card (--cards md) or leave the weights to their default files")
    return cards


def paper_config(v: dict, extras: list[str]) -> PaperConfig:
    """The runs of ``paper`` from its options (``pipeline_config.split_argv``), each checked as a task's run."""
    for name, value in v.items():
        if value == "":
            raise UserError(f"--{name} needs a value")
    tasks = comma_list(v["tasks"] or ",".join(recipes.TASKS), "--tasks", tuple(recipes.TASKS))
    cards = _cards(v)
    if v["work_dir"] and any(key in v["work_dir"] for key in ("{task}", "{card}", "{size}")):
        raise UserError(f"--work_dir {v['work_dir']}: the paper command's work dir holds every run (in "
                        "<task>_<card>/), so it takes no {task}, {card} or {size}")
    root = Path(v["work_dir"] or project_root() / "runs" / "paper").absolute()
    if root.exists() and not root.is_dir():
        raise UserError(f"--work_dir {root}: is a file, not a folder")
    configs = []
    for task in (t for t in recipes.TASKS if t in tasks):  # the recipes' order: E2E, WebNLG, DART
        for card in cards:
            values = {**v, "cards": None, "tasks": None, "model_card": card, "work_dir": str(root / "{task}_{card}")}
            configs.append(config_from(recipes.task(task), values, list(extras)))
    return PaperConfig(root, tuple(configs))


def run_paper(paper: PaperConfig) -> Path | None:
    """Every run, then the paper report; its markdown, or None when a run paused or no report was asked for."""
    from .pipeline import run

    complete = True
    for i, config in enumerate(paper.configs, 1):
        seeds = f"seeds {', '.join(map(str, config.seeds))}" if config.seeds else "one run"
        stage(f"paper {i}/{len(paper.configs)}: {config.task} with {Path(config.model_card).name} ({seeds}) "
              f"in {config.work_dir}")
        complete = bool(run(config)) and complete  # a paused run leaves the others to run
    if not complete or "report" not in paper.stages:
        return None
    return write_paper_report(paper.work_dir, [config.work_dir / "report.json" for config in paper.configs])


def write_paper_report(root: Path, reports: list[Path]) -> Path:
    """<root>/paper_report.{md,json} from the runs' report.json files; skipped when they have not changed."""
    from .paper_report import paper_report, paper_report_paths
    from .report import load_report

    stage("paper report (Tables 3, 13, 14)")
    marks = stamps.StampDir(root / ".stamps")
    outputs, signature = list(paper_report_paths(root)), [str(p) for p in reports]
    if marks.up_to_date("paper_report", signature, outputs, reports):
        say(f"up to date: {outputs[0]}")
        return outputs[0]
    marks.folder.mkdir(parents=True, exist_ok=True)
    marks.clear("paper_report")
    paper_report([load_report(p) for p in reports], root, names=signature)
    marks.write("paper_report", signature)
    say(f"wrote {outputs[0]} and {outputs[1].name}")
    return outputs[0]


def print_paper_summary(paper: PaperConfig, report: Path | None) -> None:
    if report is None:
        return
    say()
    say(report.read_text(encoding="utf-8"))
    say(f"paper report: {report} (+ paper_report.json); each run's report: "
        + ", ".join(str(c.work_dir / "report.md") for c in paper.configs))
