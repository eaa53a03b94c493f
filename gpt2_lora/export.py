"""CLI: a trained model as a folder that Hugging Face transformers or PEFT load.

    python -m gpt2_lora.export peft --init_checkpoint ADAPTER --base_checkpoint BASE --out DIR
    python -m gpt2_lora.export hf   --init_checkpoint ADAPTER --base_checkpoint BASE --out DIR

* ``peft``: adapter_config.json + adapter_model.safetensors + README.md, for
  ``peft.PeftModel.from_pretrained(transformers.GPT2LMHeadModel.from_pretrained(BASE_DIR), DIR)``. Our q/v
  LoRA is written as the equal rank-2r LoRA on the fused c_attn (``peft_adapter`` explains the layout).
* ``hf``: the merged model (W + ΔW) as config.json + model.safetensors, for
  ``transformers.GPT2LMHeadModel.from_pretrained(DIR)``; ``train --save_merged`` writes the same folder.

peft and transformers are not imported: the files are JSON and safetensors. A folder is written into a temp
folder beside ``--out`` and renamed into place; an existing non-empty ``--out`` needs ``--overwrite``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from . import cli as cli_flags
from . import lora, loading, peft_adapter
from .checkpoint import save_state_dict
from .errors import UserError, cli
from .fileio import atomic_folder, atomic_write, check_output_folder

FORMATS = ("peft", "hf")
HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
SAFETENSORS_HEADER = {"format": "pt"}  # what transformers and PEFT write (older transformers insist on it)


# ----------------------------------------------------------------------------------------- HF folder
def hf_state_dict(model) -> dict[str, torch.Tensor]:
    """The merged weights (LoRA folded in: the model is merged in place) with HF GPT-2 names, without the
    ``transformer.`` prefix: transformers adds it, and upstream's load_weight reads them as they are."""
    lora.merge(model)
    return {name[len("transformer."):]: p.detach().float().cpu().contiguous()
            for name, p in model.named_parameters() if "lora_" not in name}


def write_hf_files(model, folder: Path, weights_name: str = HF_WEIGHT_NAMES[0]) -> Path:
    """config.json and the merged weights (``weights_name``: model.safetensors or pytorch_model.bin) in ``folder``."""
    if weights_name not in HF_WEIGHT_NAMES:
        raise ValueError(f"weights_name must be one of {HF_WEIGHT_NAMES}, got {weights_name!r}")
    header = SAFETENSORS_HEADER if weights_name.endswith(".safetensors") else None
    save_state_dict(hf_state_dict(model), folder / weights_name, header=header)
    with atomic_write(folder / "config.json") as handle:
        json.dump(model.config.to_hf_config(), handle, indent=2)
    return folder / weights_name


def write_hf_folder(model, out, *, weights_name: str = HF_WEIGHT_NAMES[0], overwrite: bool = False,
                    inputs: dict | None = None) -> Path:
    """The merged model as an HF folder ``out``, put in place whole; the weights file's path."""
    with atomic_folder(out, overwrite, inputs=inputs) as temp:
        write_hf_files(model, temp, weights_name)
    return Path(out) / weights_name


# --------------------------------------------------------------------------------------- PEFT folder
_PEFT_README = """# GPT-2 LoRA adapter (PEFT format)

Written by `gpt2-lora-export peft` from `{adapter}`{base_line}.

```python
import peft, transformers
base = transformers.GPT2LMHeadModel.from_pretrained("BASE_DIR")  # the base model above, as an HF folder
model = peft.PeftModel.from_pretrained(base, "{out_name}")
```

LoRA of rank {r} on the fused `c_attn` (q, k, v), lora_alpha {alpha}. The original adapter is rank {r0} on
{slices} only: lora_A is its A, lora_B holds each slice's B in that slice's rows and its own columns, zeros
elsewhere; the scaling alpha/r is unchanged. Inference and merging give the original model exactly; training
this adapter further in PEFT would also train the zero blocks.
"""


def write_peft_folder(model, out, *, adapter: str, base: str | None, base_dir: str | None = None,
                      overwrite: bool = False, inputs: dict | None = None) -> Path:
    """The model's c_attn LoRA as a PEFT adapter folder ``out`` (see ``peft_adapter``); ``base`` names the base
    in the README, ``base_dir`` (an HF folder, or None) is written as base_model_name_or_path."""
    tensors, r, alpha = peft_adapter.exported_tensors(model)
    c_attn = model.transformer.h[0].attn.c_attn
    slices = ", ".join(name for name, on in zip("qkv", c_attn.enable_lora) if on)
    base_line = f" over `{base}`" if base else ""
    with atomic_folder(out, overwrite, inputs=inputs) as temp:
        save_state_dict(tensors, temp / peft_adapter.WEIGHTS_NAME, header=SAFETENSORS_HEADER)
        with atomic_write(temp / peft_adapter.CONFIG_FILE) as handle:
            json.dump(peft_adapter.adapter_config(r, alpha, base_dir), handle, indent=2)
        with atomic_write(temp / "README.md") as handle:
            handle.write(_PEFT_README.format(adapter=adapter, base_line=base_line, out_name=Path(out).name, r=r,
                                             alpha=alpha, r0=c_attn.r, slices=slices))
    return Path(out)


# ---------------------------------------------------------------------------------------------- CLI
def build_parser():
    p = cli_flags.Parser(prog="python -m gpt2_lora.export",
                         description="A trained model as a PEFT adapter folder or a merged HF model folder.")
    p.add_argument("format", choices=FORMATS, help="peft: LoRA adapter for peft.PeftModel; hf: merged model for "
                   "transformers.GPT2LMHeadModel")
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    cli_flags.add_model_flags(p, init_help="the trained checkpoint (ours, full or LoRA-only; an HF or a PEFT "
                              "LoRA folder); its description gives the config, r and alpha")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.init_checkpoint is None:
        raise UserError("--init_checkpoint is required (the trained checkpoint to export)")
    inputs = {"--init_checkpoint": args.init_checkpoint, "--base_checkpoint": args.base_checkpoint}
    check_output_folder(args.out, args.overwrite, inputs=inputs)
    spec = loading.spec_from_args(args, parser, argv)
    config = loading.resolve_config(spec)
    if args.format == "peft" and config.lora_attn_dim == 0:
        raise UserError(f"{args.init_checkpoint}: no LoRA weights to export as a PEFT adapter (lora_dim 0); "
                        f"export it as a merged model: export hf")
    model = loading.load_model(spec, "cpu", torch.float32, config=config, merge=False)
    if args.format == "peft":
        base = args.base_checkpoint
        base_dir = str(Path(base).resolve()) if base and (Path(base) / "config.json").is_file() else None
        out = write_peft_folder(model, args.out, adapter=args.init_checkpoint, base=base, base_dir=base_dir,
                                overwrite=args.overwrite, inputs=inputs)
        print(f"wrote {out}: load it with peft.PeftModel.from_pretrained(transformers.GPT2LMHeadModel"
              f".from_pretrained(BASE_DIR), {str(out)!r})", file=sys.stderr)
    else:
        out = write_hf_folder(model, args.out, overwrite=args.overwrite, inputs=inputs)
        print(f"wrote {out.parent}: load it with transformers.GPT2LMHeadModel.from_pretrained({str(out.parent)!r})",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
