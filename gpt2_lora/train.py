"""Fine-tune GPT-2 with LoRA: ``python -m gpt2_lora.train`` (console script ``gpt2-lora-train``).

Accepts every flag of microsoft/LoRA ``examples/NLG/src/gpt2_ft.py`` with its meaning and default
(including the ``--adam_epislon`` spelling), so the paper's command works with only the script
changed. One process needs no launcher; ``torchrun --nproc_per_node=N`` trains on N GPUs with DDP
(global batch = ``--train_batch_size`` x N, as upstream). Maths: upstream's masked loss with label
smoothing, AdamW, schedules, gradient accumulation and clipping (see ``training.step`` and
``training.optim``).

Differences from upstream, all deliberate:

* the schedule advances once per optimizer step, and ``--max_step``/``--warmup_step``/the intervals
  count optimizer steps (upstream: micro-batches; identical with ``--grad_acc 1``);
* validation loss is upstream's mean of per-batch losses over ``--valid_batch_size`` batches, taken
  in file order without upstream's random fill-in examples (upstream shuffles the validation set);
* LoRA layers never merge/unmerge around evaluation, so frozen weights stay bit-identical;
* checkpoints hold the trained weights only (plus ``resume.pt``), ``--save_merged`` writes the full
  merged model; upstream writes the full unmerged model at each epoch end.

The parts, in ``gpt2_lora/training/``: ``flags`` and ``config`` (checked once), ``distributed`` (torchrun),
``loop`` (the Trainer), ``batching``/``sampling`` (batches), ``step``/``cudagraph``/``optim`` (one step),
``rundir`` (the files in --work_dir).
"""

from __future__ import annotations

import sys

from .errors import cli
from .training.config import TrainConfig
from .training.distributed import process_group
from .training.flags import build_parser
from .training.loop import Trainer


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = TrainConfig.from_args(args)  # every flag checked, every derived value (precision, stepper, ...)
    with process_group(config.world):     # torchrun's N processes (DDP); nothing for one process
        trainer = Trainer(config)          # data, batch plan, model, optimizer, resume state
        return trainer.run()               # epochs of steps; log, checkpoint, validate; the final save


if __name__ == "__main__":
    sys.exit(main())
