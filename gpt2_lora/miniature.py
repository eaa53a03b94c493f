"""Does LoRA match full fine-tuning on a pretrained base? The paper's Table 3, in miniature.

No pretrained GPT-2 exists on our machines, so the experiment makes its own base: GPT-2 sm pretrained
from random initialisation as a plain language model on the data-to-text text that is not E2E (WebNLG
2017 train + DART train without its E2E-sourced annotations; ``miniature_corpus``). On E2E (and, as a
second mode, WebNLG), from that base, with the paper's recipe and decoding:

* full fine-tuning, and LoRA r=4 on q,v (alpha 32), each over several seeds;
* LoRA r=1 and r=16; no adaptation at all (the control); full fine-tuning from random initialisation
  for the same steps (what the base is worth).

    python scripts/miniature.py OUT [--budget full|tiny] [--task e2e|webnlg|all] [--device cuda]
                                    [--data data] [--work runs/miniature] [--time_limit S]

Everything is kept in ``--work`` (a rerun skips whatever is finished there); OUT receives the small
result files: ``miniature.json`` (every number), ``miniature.md`` (the tables) and
``miniature_inputs.json.gz`` (the scorer inputs, for ``--rescore`` on a machine with Java and nltk).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime
import gzip
import json
import multiprocessing
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from . import data, miniature_report, miniature_score
from . import miniature_stages as stages
from .devices import resolve_device
from .errors import UserError, cli
from .fileio import atomic_files, atomic_write, check_outputs, require_file
from .miniature_corpus import build_corpus
from .miniature_plan import BUDGETS, Budget, Clock, Layout, Run, plan
from .prepare import prepare_task

TASKS = ("e2e", "webnlg")
OUTPUT_FILES = ("miniature.json", "miniature.md", "miniature_inputs.json.gz")


def say(message: str) -> None:
    print(f"[miniature {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- inputs
def model_card(budget: Budget, layout: Layout) -> str:
    if isinstance(budget.model, str):
        return budget.model
    path = layout.work / "model.json"
    if not path.is_file():
        stages.write_json(path, dict(budget.model))
    return str(path)


def task_data(task: str, data_dir: Path, layout: Layout, vocab: str | None) -> Path:
    """A folder with the task's encoded splits and test_formatted.jsonl: prepared into the work dir from
    the source files when they exist, else the prepared folder in ``data_dir`` as it is."""
    sub = data_dir / data.SOURCE_SUBDIRS[task]
    if (sub / data.SOURCE_FILES[task]["train"]).is_file():
        out = layout.work / "data" / task
        prepare_task(task, sub, out, vocab)
        return out
    needed = [sub / n for n in ("train.jsonl", "valid.jsonl", "test.jsonl", "test_formatted.jsonl")]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise UserError(f"--data {data_dir}: no {task} source files and no prepared {', '.join(missing)} "
                        f"(scripts/download_data.sh writes both)")
    return sub


def check_settings(layout: Layout, budget: Budget) -> None:
    """A work dir serves one budget: results of other settings are never mixed into the tables."""
    mine = {"budget": budget.name, "model": budget.model if isinstance(budget.model, str) else dict(budget.model),
            "pretrain_steps": budget.pretrain_steps, "task_length": list(budget.task_length)}
    if layout.settings.is_file():
        saved = stages.read_json(layout.settings)
        if saved != mine:
            raise UserError(f"--work {layout.work} holds a run of other settings ({saved}); give another --work")
    else:
        stages.write_json(layout.settings, mine)


# ------------------------------------------------------------------------------------------- stages
def ensure_base(args, budget: Budget, layout: Layout, clock: Clock, device: torch.device) -> dict:
    if layout.base_info.is_file():
        say(f"base: {layout.base} (done earlier)")
        return stages.read_json(layout.base_info)
    stats = build_corpus(args.data, layout.corpus, args.vocab, budget.valid_max)
    say(f"corpus: {stats.train_examples:,} examples, {stats.train_tokens:,} tokens; left out "
        f"{stats.dart_e2e_dropped:,} E2E-sourced DART annotations and {stats.dart_webnlg_test_overlap_dropped} "
        f"DART WebNLG texts that are WebNLG test texts")
    say(f"pretraining {budget.model_desc} for {budget.pretrain_steps} steps (guess: {clock.guess('pretrain'):.0f} s)")
    info = stages.pretrain(layout.corpus, model_card(budget, layout), budget.pretrain_steps, budget.pretrain_evals,
                           budget.pretrain_flags, layout.scratch / "pretrain", layout.base, device,
                           max(1, budget.log_interval // 10))
    info["corpus"] = asdict(stats)
    stages.write_json(layout.base_info, info)
    clock.record("pretrain", info["train_s"])
    say(f"base: best valid loss {info['valid_loss']:.4f} at step {info['best_step']} of {info['steps']}, "
        f"{info['train_s']:.0f} s, {info['tokens_per_s'] or 0:,} tokens/s")
    return info


def run_info(run: Run, ctx: dict) -> dict:
    """What a run is, before it runs: its arm, seed and trainable parameters."""
    r = run.arm.lora_dim
    trainable = stages.count_params(ctx["base_card"], r)[0]
    return {"name": run.name, "arm": run.arm.key, "label": run.arm.label, "seed": run.seed, "lora_dim": r,
            "trainable_params": trainable, "trainable_fraction": trainable / ctx["total_params"], "steps": 0,
            "train_s": 0.0, "beam_s": None, "valid_loss": None}


def train_and_beam(task: str, run: Run, info: dict, ctx: dict) -> None:
    """Train (unless the arm has no training) and decode one run; ``info`` gains the numbers (info.json)."""
    budget, layout, device = ctx["budget"], ctx["layout"], ctx["device"]
    recipe, card, base = ctx["recipe"][task], ctx["base_card"], layout.base
    r = run.arm.lora_dim
    weights = ["--init_checkpoint", base]
    if r is not None:
        trained = stages.train_run(ctx["data"][task], recipe, r, run.seed, base if run.arm.from_base else None,
                                   card, budget.task_length, budget.task_flags, layout.train_dir(task, run),
                                   device, budget.log_interval)
        ctx["clock"].record(f"train_{task}", trained["train_s"])
        weights = ["--init_checkpoint", trained.pop("checkpoint")] + (["--base_checkpoint", base]
                                                                       if run.arm.from_base else [])
        info.update(trained)
    run_dir = layout.run_dir(task, run)
    info["beam_s"] = stages.beam_run(ctx["data"][task] / "test.jsonl", card, r or 0,
                                     stages.flag_value(recipe, "--lora_alpha"),
                                     weights + list(budget.decoding_overrides), budget.beam_precision, run_dir, device)
    ctx["clock"].record(f"beam_{task}", info["beam_s"])
    stages.write_json(run_dir / "info.json", info)
    stages.drop_checkpoints(layout.train_dir(task, run))


def run_task(task: str, ctx: dict, pool) -> None:
    """Every run of the plan that is not finished, until the time limit; scoring overlaps the next run."""
    layout, clock = ctx["layout"], ctx["clock"]
    pending, stopped = {}, False
    for run in plan(ctx["budget"]):
        run_dir = layout.run_dir(task, run)
        if (run_dir / "result.json").is_file():
            continue
        if not (run_dir / "info.json").is_file():  # decoded runs are only scored: always in time
            need = clock.run_estimate(task, run)
            stopped = stopped or not clock.fits(need + clock.guess("score"))
            if stopped:
                say(f"{task}: {run.name} left for a rerun (≈ {need:.0f} s; {clock.elapsed():.0f} s of the "
                    f"{clock.limit:.0f} s limit used): rerun the same command to continue")
                continue
            say(f"{task}: {run.name} ({run.arm.label}, seed {run.seed})")
            info = run_info(run, ctx)
            try:
                train_and_beam(task, run, info, ctx)
            except UserError as err:  # e.g. a diverged loss: recorded, and the other runs still run
                say(f"{run.name} failed: {err} (recorded; delete {run_dir} to try it again)")
                stages.write_json(run_dir / "result.json", {**info, "scores": None, "error": str(err)})
                publish(ctx)
                continue
        pending[run.name] = (run_dir, pool.submit(miniature_score.score_run, task, str(run_dir),
                                                  str(ctx["data"][task] / "test_formatted.jsonl"), ctx["vocab"]))
        collect(pending, ctx, wait=False)
    collect(pending, ctx, wait=True)


def collect(pending: dict, ctx: dict, wait: bool) -> None:
    """Write result.json for every scored run (all of them when ``wait``), then refresh OUT."""
    done = [name for name, (_, job) in pending.items() if wait or job.done()]
    for name in done:
        run_dir, job = pending.pop(name)
        started = time.perf_counter()
        try:
            scores = job.result()
        except Exception as err:  # noqa: BLE001 (a scoring bug must not end the device call: recorded)
            scores = {"scores": None, "error": f"scoring failed: {type(err).__name__}: {err}"}
        ctx["clock"].record("score", time.perf_counter() - started)
        result = {**stages.read_json(run_dir / "info.json"), "scores": scores["scores"],
                  "approximate": scores.get("approximate", []), "score_error": scores.get("error")}
        stages.write_json(run_dir / "result.json", result)
        show = {k: round(v, 4) for k, v in (result["scores"] or {}).items() if v is not None}
        say(f"{name}: {show or result['score_error']}")
    if done:
        publish(ctx)


class InlinePool:
    """``submit`` that runs the job at once (``--score_workers 0``)."""

    @staticmethod
    def submit(fn, *args):
        job = futures.Future()
        job.set_result(fn(*args))
        return job

    def shutdown(self, wait=True):
        pass


# ------------------------------------------------------------------------------------------ outputs
def task_results(task: str, ctx: dict) -> dict:
    """The finished runs of a task found in the work dir, the arms' aggregates, and what is missing."""
    runs, missing = [], []
    for run in plan(ctx["budget"]):
        path = ctx["layout"].run_dir(task, run) / "result.json"
        (runs.append(stages.read_json(path)) if path.is_file() else missing.append(run.name))
    return {"runs": runs, "aggregate": miniature_report.aggregate(task, runs), "missing": missing}


def result_document(ctx: dict) -> dict:
    """miniature.json: the setting, the base and corpus, and every task's runs and rows."""
    budget, base = ctx["budget"], ctx.get("base") or {}
    settings = {**asdict(budget), "model": budget.model if isinstance(budget.model, str) else dict(budget.model)}
    decoding = stages.DECODING_DESC + (f" (this budget: {' '.join(budget.decoding_overrides)})"
                                       if budget.decoding_overrides else "")
    return {"version": 1, "date": datetime.datetime.now().isoformat(timespec="seconds"), "card": ctx["card"],
            "torch": torch.__version__, "budget": settings, "elapsed_s": round(ctx["clock"].elapsed(), 1),
            "base": {k: v for k, v in base.items() if k != "corpus"}, "corpus": base.get("corpus"),
            "base_total_params": ctx.get("total_params"),
            "recipe": {t: " ".join(flags) for t, flags in ctx["recipe"].items()},
            "recipe_desc": " ".join(ctx["recipe"]["e2e"]), "decoding_desc": decoding,
            "tasks": {t: task_results(t, ctx) for t in TASKS
                      if t in ctx["tasks"] or (ctx["layout"].work / t).is_dir()}}


def scorer_bundle(document: dict, layout: Layout) -> dict:
    """The scorer inputs of every finished run (references once per task), for ``--rescore``."""
    bundle = {}
    for task, body in document["tasks"].items():
        runs = [layout.work / task / run["name"] for run in body["runs"] if not run.get("error")]  # decoded ones
        if runs:  # the references depend on the test set only: stored once
            bundle[task] = {"references": miniature_score.read_inputs(task, runs[0], "references"),
                            "hypotheses": {p.name: miniature_score.read_inputs(task, p, "hypotheses") for p in runs}}
    return bundle


def write_outputs(out: Path, document: dict, bundle: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # the scorer inputs (~1 MB per task gzipped; WebNLG: 18 reference files, 3 hypotheses per run) first,
    # then the numbers and their table together
    with atomic_write(out / "miniature_inputs.json.gz", "wb", encoding=None) as handle:
        handle.write(gzip.compress(json.dumps(bundle).encode("utf-8"), mtime=0))
    with atomic_files([out / "miniature.json", out / "miniature.md"]) as (numbers, table):
        json.dump(document, numbers, indent=1)
        table.write(miniature_report.markdown(document))


def publish(ctx: dict) -> None:
    document = result_document(ctx)
    write_outputs(ctx["out"], document, scorer_bundle(document, ctx["layout"]))


# ------------------------------------------------------------------------------------------ rescore
def rescore(source: Path, out: Path, scratch: Path) -> None:
    """Score the stored scorer inputs of an earlier OUT here (where Java and nltk are), re-aggregate."""
    document = stages.read_json(require_file(source / "miniature.json", "--rescore"))
    try:
        bundle = json.loads(gzip.decompress((source / "miniature_inputs.json.gz").read_bytes()))
    except (OSError, EOFError, ValueError) as err:
        raise UserError(f"--rescore {source}: cannot read miniature_inputs.json.gz ({err})") from None
    for task, body in document["tasks"].items():
        for run in body["runs"]:
            if run["name"] not in bundle.get(task, {}).get("hypotheses", {}):
                continue  # a run that failed before decoding: nothing to score
            scored = miniature_score.rescore_inputs(task, scratch / task / run["name"], bundle[task]["references"],
                                                    bundle[task]["hypotheses"][run["name"]])
            run.update(scores=scored["scores"], approximate=scored.get("approximate", []),
                       score_error=scored.get("error"))
        body["aggregate"] = miniature_report.aggregate(task, body["runs"])
    document["rescored"] = {"where": f"{platform.node() or 'this machine'}",
                            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    write_outputs(out, document, bundle)


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    from .cli import Parser

    p = Parser(prog="python scripts/miniature.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for miniature.json, miniature.md and miniature_inputs.json.gz")
    p.add_argument("--budget", choices=tuple(BUDGETS), default="full", help="full: one H200 call; tiny: CPU test")
    p.add_argument("--task", choices=(*TASKS, "all"), default="e2e", help="which fine-tuning task(s) to run")
    p.add_argument("--data", type=Path, default=Path("data"),
                   help="data root (e2e/, webnlg_challenge_2017/, dart/ and gpt2/ as scripts/download_data.sh lays "
                        "them out); WebNLG and DART need their source files for the corpus")
    p.add_argument("--work", type=Path, default=Path("runs/miniature"), help="where everything is kept; a rerun "
                   "skips what is finished there")
    p.add_argument("--scratch", type=Path, default=None, help="training checkpoints (deleted after decoding) [--work]")
    p.add_argument("--vocab", default=None, help="GPT-2 BPE folder [--data/gpt2 when present]")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N [CUDA when present]")
    p.add_argument("--time_limit", type=float, default=None, help="seconds from the start: begin no run that "
                   "would end later (by the measured or guessed times); the rest waits for a rerun")
    p.add_argument("--pretrain_steps", type=int, default=None, help="override the budget's pretraining steps")
    p.add_argument("--score_workers", type=int, default=2, help="processes that decode and score on the CPU "
                   "while the device trains (0: in this process)")
    p.add_argument("--rescore", type=Path, default=None, metavar="DIR", help="score the miniature_inputs.json.gz of "
                   "an earlier OUT here (Java and nltk give every metric) and write the tables to OUT")
    return p


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def experiment(args, budget: Budget) -> None:
    layout = Layout(args.work, args.scratch or args.work)
    layout.work.mkdir(parents=True, exist_ok=True)
    check_settings(layout, budget)
    device = resolve_device(args.device)
    clock = Clock(budget, args.time_limit)
    tasks = TASKS if args.task == "all" else (args.task,)
    ctx = {"budget": budget, "layout": layout, "device": device, "clock": clock, "out": args.out, "tasks": tasks,
           "vocab": args.vocab, "card": device_name(device), "recipe": {t: stages.recipe_flags(t) for t in TASKS}}
    ctx["data"] = {t: task_data(t, args.data, layout, args.vocab) for t in tasks}
    ctx["base"] = ensure_base(args, budget, layout, clock, device)
    ctx["base_card"] = str(layout.base / "config.json")
    ctx["total_params"] = stages.count_params(ctx["base_card"], None)[1]
    left = [(t, r) for t in tasks for r in plan(budget) if not (layout.run_dir(t, r) / "result.json").is_file()]
    need = sum(clock.run_estimate(t, r) for t, r in left)
    say(f"estimate: {len(left)} runs left ≈ {need:.0f} s (training {clock.guess('train_' + tasks[0]):.0f} s + beam "
        f"{clock.guess('beam_' + tasks[0]):.0f} s each, guessed until measured) -> the call ends at ≈ "
        f"{clock.elapsed() + need:.0f} s" + (f" of the {args.time_limit:.0f} s limit" if args.time_limit else ""))
    publish(ctx)  # the base and corpus figures are in OUT before the first run
    pool = (InlinePool() if args.score_workers == 0 else
            futures.ProcessPoolExecutor(args.score_workers, mp_context=multiprocessing.get_context("spawn")))
    try:
        for task in tasks:
            run_task(task, ctx, pool)
    finally:
        pool.shutdown(wait=True)
    publish(ctx)
    say(f"done in {clock.elapsed():.0f} s: {args.out / 'miniature.md'}")


@cli
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_outputs({f"OUT ({name})": args.out / name for name in OUTPUT_FILES})
    if args.vocab is None and (args.data / "gpt2" / "encoder.json").is_file():
        args.vocab = str(args.data / "gpt2")
    if args.rescore is not None:
        rescore(args.rescore, args.out, args.work / "rescore")
        return 0
    budget = BUDGETS[args.budget]
    if args.pretrain_steps is not None:
        if args.pretrain_steps < 1:
            raise UserError(f"--pretrain_steps must be at least 1, got {args.pretrain_steps}")
        budget = replace(budget, pretrain_steps=args.pretrain_steps)
    if args.score_workers < 0:
        raise UserError(f"--score_workers must be >= 0, got {args.score_workers}")
    experiment(args, budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
