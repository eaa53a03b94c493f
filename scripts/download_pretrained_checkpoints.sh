#!/usr/bin/env bash
# Download the public OpenAI GPT-2 weights (Hugging Face) that the LoRA paper fine-tunes.
#
#   scripts/download_pretrained_checkpoints.sh [sm|md|lg|all ...] [--dest DIR]
#
# Default: md (GPT-2 Medium, the paper's main model) into <repo>/pretrained_checkpoints, under upstream's
# file names: gpt2-pytorch_model.bin (sm), gpt2-medium-pytorch_model.bin (md), gpt2-large-pytorch_model.bin
# (lg), each with its HF config as <name>-config.json. Files already present are kept; downloads go to a
# temporary file that is renamed only when complete. Sizes: sm 0.5 GB, md 1.5 GB, lg 3.2 GB.
# Use one with: scripts/train_e2e.sh (finds it by default) or --init_checkpoint FILE, or GPT2_CKPT=FILE.
# The card -> name map is gpt2_lora/recipes.py's ($PYTHON picks the interpreter; default: python).
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/pretrained_checkpoints"
HF="https://huggingface.co"
SIZES=()
while [ $# -gt 0 ]; do
  case "$1" in
    sm|md|lg) SIZES+=("$1"); shift ;;
    all) SIZES+=(sm md lg); shift ;;
    --dest) [ $# -ge 2 ] || die "--dest needs a directory"; DEST="$2"; shift 2 ;;
    --dest=*) DEST="${1#--dest=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1 (expected sm, md, lg, all or --dest DIR; see --help)" ;;
  esac
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(md)

fetch() {  # URL FILE
  if command -v curl >/dev/null; then
    curl -fL --retry 3 --progress-bar -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --show-progress -O "$2" "$1"
  else
    die "neither curl nor wget is installed"
  fi
}

TMP=""
trap '[ -z "$TMP" ] || rm -f "$TMP"' EXIT  # Ctrl-C mid-download leaves no .part file
get() {  # URL TARGET
  local url="$1" target="$2" tmp
  if [ -s "$target" ]; then echo "present   $target"; return; fi
  tmp="$(mktemp "$target.part.XXXXXX")"; TMP="$tmp"
  echo "download  $url"
  if ! fetch "$url" "$tmp"; then rm -f "$tmp"; die "download failed: $url (offline? copy the file to $target yourself)"; fi
  [ -s "$tmp" ] || { rm -f "$tmp"; die "empty download: $url"; }
  chmod 644 "$tmp"
  mv "$tmp" "$target"; TMP=""
}

[ ! -e "$DEST" ] || [ -d "$DEST" ] || die "--dest $DEST is a file, not a folder"
mkdir -p "$DEST" || die "cannot create --dest $DEST"
for size in "${SIZES[@]}"; do
  name=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python}" -m gpt2_lora.recipes hf-name "$size")
  get "$HF/$name/resolve/main/config.json" "$DEST/$name-config.json"
  get "$HF/$name/resolve/main/pytorch_model.bin" "$DEST/$name-pytorch_model.bin"
  # a torch checkpoint starts with a zip ("PK") or pickle (0x80) header: reject e.g. an HTML error page
  case "$(head -c 2 "$DEST/$name-pytorch_model.bin" | od -An -tx1 | tr -d ' \n')" in
    504b|80*) ;;
    *) mv "$DEST/$name-pytorch_model.bin" "$DEST/$name-pytorch_model.bin.bad"
       die "$name: the download is not a torch checkpoint (kept as $name-pytorch_model.bin.bad)" ;;
  esac
done
echo "done: $DEST"
