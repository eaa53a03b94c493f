"""The whole pipeline on built-in data, on the CPU, in a few minutes (``bash scripts/demo.sh [WORK_DIR]``):
synthetic E2E-style data -> a tiny GPT-2 base -> LoRA fine-tuning -> beam search -> decode -> score -> report.

No pretrained GPT-2 is downloaded: a tiny randomly initialised GPT-2 (``recipes.DEMO_MODEL``) is first fully
fine-tuned on the synthetic set as a stand-in base, then LoRA-tuned on top of it with ``recipes.DEMO``
(r=4, alpha=32, the paper's recipe with a shorter schedule and a higher learning rate) through
``gpt2_lora.pipeline``. METEOR is scored only when Java is present. A second run finds every stage up to date.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from . import prepare, recipes, stages
from .errors import cli
from .fileio import atomic_write
from .pipeline import PipelineConfig, Run, print_summary, run, training
from .pipeline_config import project_root


def write_if_changed(path: Path, text: str) -> None:
    """Rewrite only a changed file: the model config is an input of training, so its time matters."""
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        with atomic_write(path) as handle:
            handle.write(text)


@cli
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    work = Path(argv[0] if argv else project_root() / "runs" / "demo").absolute()
    start = time.monotonic()
    step = lambda title: stages.say(f"\n=== [{time.monotonic() - start:.0f} s] {title} ===")  # noqa: E731

    step("1/3 built-in synthetic E2E-style data")
    data = work / "data"
    prepare.prepare_synthetic(data / recipes.DEMO.data_dir, recipes.DEMO_SYNTHETIC_SIZES)
    card = work / "tiny_gpt2.json"
    write_if_changed(card, json.dumps(recipes.DEMO_MODEL) + "\n")
    base = PipelineConfig(recipe=dataclasses.replace(recipes.DEMO, train=recipes.DEMO_BASE), model_card=str(card),
                          init_checkpoint=None, work_dir=work / "base", data=data, device="cpu", stages=("train",))

    step("2/3 a tiny GPT-2 base (full fine-tuning from random weights; stands in for pretrained GPT-2)")
    base_run = Run(base, None, base.work_dir)
    (base_run.work / ".stamps").mkdir(parents=True, exist_ok=True)
    checkpoint = stages.train(training(base_run), base_run.marks)

    step("3/3 LoRA fine-tuning on top of it (r=4, alpha=32, LoRA dropout 0.1), then beam, decode, score, report")
    lora = dataclasses.replace(base, recipe=recipes.DEMO, init_checkpoint=checkpoint, work_dir=work / "lora",
                               stages=("train", "beam", "decode", "score", "report"))
    reports = run(lora)
    print_summary(lora, reports)
    stages.say(f"demo finished in {time.monotonic() - start:.0f} s; everything is in {work} (loss curves: "
               f"{work / 'base' / 'loss.png'}, {work / 'lora' / 'loss.png'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
