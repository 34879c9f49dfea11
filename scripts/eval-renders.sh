#!/usr/bin/env bash
# Evaluate one checkpoint on one split of several POP909 renders, one JSON per render.
#   bash scripts/eval-renders.sh CHECKPOINT SPLIT OUT_DIR [CONFIG] -- MANIFEST...
# e.g. (docs/evaluation.md):
#   bash scripts/eval-renders.sh models/assets/hookstream-chorus-pop909.safetensors test docs/eval/chorus \
#       configs/detect.yaml -- data/pop909/manifest.jsonl data/pop909-musescore-band/manifest.jsonl \
#       data/pop909-opl3-strings/manifest.jsonl
# Writes OUT_DIR/<render>.json (hookstream eval --json) and OUT_DIR/<render>/ (report, plots).
set -euo pipefail
ckpt=$1 split=$2 out=$3 config=${4:-configs/detect.yaml}
shift 4; [ "${1:-}" = "--" ] && shift
mkdir -p "$out"
for manifest in "$@"; do
  render=$(basename "$(dirname "$manifest")")
  echo "eval: $render ($split) -> $out/$render.json" >&2
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/hookstream eval --manifest "$manifest" --split "$split" \
    --checkpoint "$ckpt" --config "$config" --json --report "$out/$render" > "$out/$render.json"
done
