#!/usr/bin/env python
"""Time `gpt2_lora.prepare` on E2E, WebNLG and DART (target: all three under 60 s on 2 cores).

    python scripts/benchmark_prepare.py [--src ../shared/data] [--vocab DIR] [--num_threads N]
    python scripts/benchmark_prepare.py --quick          # synthetic set only, runs anywhere

Each output's sha256 is compared with the output of microsoft/LoRA's own format_converting_*.py +
gpt2_encode.py --add_bos --add_eos on the ../shared/data mirror (hashes below, measured once); with
other sources (e.g. LoRA's original DART train/test) the "upstream" column simply says "-".
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt2_lora import data, prepare  # noqa: E402

# sha256 of upstream's outputs on the mirror (README.md of ../shared/data lists the inputs' hashes)
UPSTREAM_SHA256 = {
    "e2e/train_formatted.jsonl": "c17ccba9343fb718710d9cd8a510352fd16db22144861e12fb1bfad950cdd5d4",
    "e2e/train.jsonl": "dbc41b098ac523651894eabb7fe140f272445efe3bb4654d4666f2a1976c86b2",
    "e2e/valid_formatted.jsonl": "b8aea8e7c862d1c3db3279bb494131d838e0fb1223597ed070f3cf9dde50ed69",
    "e2e/valid.jsonl": "05b3cbed305f639030c0cba1d437f4fe200c8f55d1f8e15b4c47eac54eb73005",
    "e2e/test_formatted.jsonl": "9f774414e4dc88271fa2982ec21c8c1e2344c6c54d474e0e3ef8c8d677a49c9c",
    "e2e/test.jsonl": "32b4c41133c61d714642e128498a153b1864390f3b353981a95b62b442fbe07d",
    "webnlg/train_formatted.jsonl": "1b1f3d9e702d148e99d5ff0dab83732ff772a2c384700fca417e60a52b2647f7",
    "webnlg/train.jsonl": "feec32171fe8f2c63b3f982df75f8cf2456fe47fd3fb1d1c024b311c279ee652",
    "webnlg/valid_formatted.jsonl": "f92c32802d38cb520103e6edaa620da31b11db399fc81db8d02f83e7af33d3cd",
    "webnlg/valid.jsonl": "ea13cfdc7352c296c79e89c1df2bbd59b5f4f298c8265e8c40decdd3cf22b972",
    "webnlg/test_formatted.jsonl": "755e5cf84869516aa4fcd7b34e783b3bd76136cc366ff50f4c3e94af9c70bdba",
    "webnlg/test.jsonl": "b50d00068fd609be5ffbfd4789f80bf44fde03088569c37563e9732fdcd1b6b5",
    "dart/train_formatted.jsonl": "8bb206b0d5b416ca72b5d543071a0ea8439420a4a6a4c8cf567e347847eee735",
    "dart/train.jsonl": "89c6b5262a70294eeeff1dc9dd5e58d45d1387317cb1901e78ff97442b537cf9",
    "dart/valid_formatted.jsonl": "79cd5c51462e6db68653e3807bb51d0da4be9515efa4f8ea67d88b5ed439d994",
    "dart/valid.jsonl": "809de854dfca2269f04d9ff9734016c74c610cff30d15761bb714744c3375fbb",
    "dart/test_formatted.jsonl": "42ad404f533d373a196c89dfc607acbea1e82e039b459b004601d2e272ed6433",
    "dart/test.jsonl": "e5328040dffe17774279795c9cf2b4f9d02d3e3368e7e9d01a92173ee6b83a0d",
}


def _default_src() -> Path:
    for candidate in (ROOT.parent / "shared" / "data", ROOT / "data"):
        if (candidate / "e2e" / "train.txt").is_file():
            return candidate
    return ROOT / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, default=None, help="data root (default ../shared/data or data/)")
    parser.add_argument("--vocab", type=Path, default=None, help="GPT-2 BPE folder (default <src>/gpt2)")
    parser.add_argument("--num_threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="synthetic data set only (no downloads needed)")
    args = parser.parse_args()
    src = args.src or _default_src()
    vocab = args.vocab or (src / "gpt2" if (src / "gpt2" / "encoder.json").is_file() else None)

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_prepare.") as tmp:
        tasks = ["synthetic"] if args.quick else list(data.READERS)
        for task in tasks:
            out = Path(tmp) / task
            start = time.perf_counter()
            if task == "synthetic":
                prepare.prepare_synthetic(out, vocab=vocab, force=True, num_threads=args.num_threads)
            else:
                prepare.prepare_task(task, src, out, vocab, force=True, num_threads=args.num_threads)
            seconds = time.perf_counter() - start
            examples = sum((out / f"{split}.jsonl").read_bytes().count(b"\n") for split in data.SPLITS)
            matches = []
            for name in prepare.output_paths(out):
                expected = UPSTREAM_SHA256.get(f"{task}/{name.name}")
                if expected is not None:
                    matches.append(hashlib.sha256(name.read_bytes()).hexdigest() == expected)
            upstream = "-" if not matches else f"{sum(matches)}/{len(matches)} identical"
            rows.append((task, examples, seconds, upstream))

    print(f"\n{'task':<10} {'examples':>9} {'seconds':>8} {'ex/s':>8}  upstream sha256")
    for task, examples, seconds, upstream in rows:
        print(f"{task:<10} {examples:>9,} {seconds:>8.1f} {examples / seconds:>8,.0f}  {upstream}")
    total = sum(r[2] for r in rows)
    print(f"{'total':<10} {sum(r[1] for r in rows):>9,} {total:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
