#!/usr/bin/env bash
# Fetch E2E, WebNLG 2017, DART and the GPT-2 BPE files, check their hashes, then prepare all three tasks.
#
#   scripts/download_data.sh [--mirror DIR] [--no-prepare] [DEST]
#
# DEST defaults to <repo>/data. Online, every file comes from microsoft/LoRA examples/NLG at a pinned commit
# (the exact files the paper's code used). With --mirror DIR the files are copied from a local folder laid out
# like DEST (e2e/, webnlg_challenge_2017/, dart/, gpt2/) instead, e.g. --mirror ../shared/data.
# A file passes if its sha256 is the documented one OR its git blob id equals LoRA's blob (see data/README.md:
# the mirror's DART train/test are faithful rebuilds with their own sha256, LoRA's originals have LoRA's blobs).
# Files already in DEST that pass are kept. Then `python -m gpt2_lora.prepare` writes
# DEST/<task>/{train,valid,test}{_formatted,}.jsonl ($PYTHON picks the interpreter; default: python).
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LORA_COMMIT=c4593f060e6a368d7bb5af5273b8e42810cdef90
LORA_URL="https://raw.githubusercontent.com/microsoft/LoRA/$LORA_COMMIT/examples/NLG"

MIRROR=""
PREPARE=1
DEST=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mirror) [ $# -ge 2 ] || die "--mirror needs a directory"; MIRROR="$2"; shift 2 ;;
    --mirror=*) MIRROR="${1#--mirror=}"; shift ;;
    --no-prepare) PREPARE=0; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$DEST" ] || die "more than one DEST given ($DEST, $1)"; DEST="$1"; shift ;;
  esac
done
DEST="${DEST:-$REPO/data}"
if [ -n "$MIRROR" ] && [ ! -d "$MIRROR" ]; then die "--mirror $MIRROR: no such directory"; fi

# path under DEST (and the mirror) | sha256 (data/README.md) | microsoft/LoRA git blob
# upstream: examples/NLG/data/<path>, except gpt2/* which is examples/NLG/vocab/*
FILES="
e2e/train.txt                     eae319082237310913d9f37f6a891d48fb3f821f29d86870d2cb4f92ddd72c5a 2f92a2790c00a48574dcc89465a326f33d7e7cc6
e2e/valid.txt                     ba963113c8401d3d26216c0dc0a6dae1ea6ea927de3bf830e32c41f65401c80d 94f87112e11198710d65a1d5dc7d0b8d9155a07d
e2e/test.txt                      81b1bcd40c4f12845ec4eb61a77bf43765d112483cd9b2f91ef10bfc1b3d8f13 084da9f4409d98058bcb020614afa83824440484
webnlg_challenge_2017/train.json  180edb6011360608c8548d4551366a9d55f140cbf9bc9397fbf4d97f6a89c639 461766d1fe902bd659b821a03f49310c22403686
webnlg_challenge_2017/dev.json    50f5a2c24d760bc84ba3e852707cd3b43b0cf2da035b425f87945a2440880488 180f096ff49a7e597dd7c507ea0c5441e839b770
webnlg_challenge_2017/test.json   2574896b23b5959d1a0cd4bb501ffbeff1a11790a9996c4cb8efed289149ff4f 7f552799b7e3b5badf95b725c20d955e0886811e
dart/dart-v1.1.1-full-train.json  c5d3a925017a74974261bffe32b0dc2ab5dcedf1244df81b5259d45c64e5d841 66d6ce4aeb5d01c318c7fc15d7747ef39ea320be
dart/dart-v1.1.1-full-dev.json    5038f3543b6d59b94ac4e3f69d15a0b01d8578913f862142e7c560200dd6e434 e3a7a497677e7edd9c45a3aaadb3ab8fd5493f75
dart/dart-v1.1.1-full-test.json   eaa1269f4bfbba6a84946dde1c4d46b1bb16a09250b44756fd340ad19b2ea3b9 c3de833701dcd475ff3bf0b72cd96e13aeeb6b68
gpt2/encoder.json                 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783 1f1d9aaca301414e7f6c9396df506798ff4eb9a6
gpt2/vocab.bpe                    1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5 226b0752cac7789c48f0cb3ec53eda48b7be36cc
"

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
sha1_stdin() {
  if command -v sha1sum >/dev/null; then sha1sum | cut -d' ' -f1; else shasum -a 1 | cut -d' ' -f1; fi
}
git_blob_of() {  # what `git hash-object FILE` prints, without needing git
  { printf 'blob %d\0' "$(wc -c <"$1" | tr -d ' ')"; cat "$1"; } | sha1_stdin
}
# passes when the sha256 is the documented one or the git blob is LoRA's; sets GOT to what was found
verify() {  # file sha256 blob
  local sha blob
  sha="$(sha256_of "$1")"
  [ "$sha" = "$2" ] && return 0
  blob="$(git_blob_of "$1")"
  [ "$blob" = "$3" ] && return 0
  GOT="sha256 $sha (git blob $blob)"
  return 1
}
fetch() {  # url output
  if command -v curl >/dev/null; then
    curl -fsSL --retry 3 --connect-timeout 20 -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q --tries=3 -O "$2" "$1"
  else
    die "neither curl nor wget is installed (or use --mirror DIR)"
  fi
}

[ ! -e "$DEST" ] || [ -d "$DEST" ] || die "DEST $DEST is a file, not a folder"
mkdir -p "$DEST" || die "cannot create DEST $DEST"
TMP=""
trap '[ -z "$TMP" ] || rm -f "$TMP"' EXIT
while read -r rel sha blob; do
  [ -n "$rel" ] || continue
  case "$rel" in gpt2/*) upstream="vocab/${rel#gpt2/}" ;; *) upstream="data/$rel" ;; esac
  target="$DEST/$rel"
  if [ -f "$target" ] && verify "$target" "$sha" "$blob"; then
    echo "ok        $rel (already there)"
    continue
  fi
  mkdir -p "$(dirname "$target")"
  TMP="$(mktemp "$target.part.XXXXXX")"
  if [ -n "$MIRROR" ]; then
    [ -f "$MIRROR/$rel" ] || { rm -f "$TMP"; die "mirror file missing: $MIRROR/$rel"; }
    cp "$MIRROR/$rel" "$TMP"
    from="$MIRROR/$rel"
  else
    fetch "$LORA_URL/$upstream" "$TMP" ||
      { rm -f "$TMP"; die "download failed: $LORA_URL/$upstream (offline? try --mirror DIR)"; }
    from="$LORA_URL/$upstream"
  fi
  GOT=""
  if ! verify "$TMP" "$sha" "$blob"; then
    rm -f "$TMP"
    die "hash mismatch for $rel from $from: expected sha256 $sha or git blob $blob, got $GOT"
  fi
  chmod 644 "$TMP"
  mv "$TMP" "$target"
  TMP=""
  echo "fetched   $rel"
done <<< "$FILES"

if [ "$PREPARE" = 1 ]; then
  PYTHON="${PYTHON:-python}"
  for task in e2e webnlg dart; do
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m gpt2_lora.prepare --task "$task" \
      --src "$DEST" --vocab "$DEST/gpt2"
  done
fi
echo "done: $DEST"
