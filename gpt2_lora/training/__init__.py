"""Training GPT-2 with LoRA, in parts (``gpt2_lora.train`` is the command line over them):

* ``flags``       — the command line (``build_parser``): upstream's flags and ours;
* ``config``      — ``TrainConfig`` (every check, every derived value) and ``RunPlan`` (what the flags and
  the training data decide together);
* ``distributed`` — where the run executes (``World``), torchrun's process group, DDP;
* ``loop``        — ``Trainer``: epochs of steps, logging, validation, checkpoints;
* ``batching``    — examples laid out as upstream's, collated into batches (padded, dynamic, packed);
* ``sampling``    — which examples share a batch, per epoch and rank (``BatchPlan``, ``packed_shape``);
* ``step``        — the loss, precision handling, the eager micro/optimizer steps, validation loss;
* ``cudagraph``   — the whole step replayed as one CUDA graph;
* ``optim``       — upstream's AdamW and learning-rate schedules;
* ``rundir``      — the files of a run's folder (checkpoints, resume.pt, log, plot, merged model).
"""
