#!/usr/bin/env bash
# GPU check: the scorer's equality tests on CUDA, then a short bench with --device cuda.
# Run on a machine with an NVIDIA GPU, from the repository root, after scripts/setup.sh:
#   bash scripts/gpu-check.sh            # about 2-4 minutes; exit code 0 = all passed
# Fails at once, with a message, when torch sees no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu-check: no CUDA device: torch.cuda.is_available() is False ($("$PY" -c 'import torch; print("torch", torch.__version__, "built for CUDA", torch.version.cuda)' 2>&1))" >&2
    exit 2
fi
"$PY" -c 'import torch; print("gpu-check:", torch.cuda.get_device_name(0), "torch", torch.__version__)'

echo "gpu-check: equality tests on cuda (scorer: streamed == whole, batched == single; processor final == detect)"
HOOKSTREAM_TEST_DEVICE=cuda timeout 180 "$PY" -m pytest -q -p no:cacheprovider \
    tests/models/test_scorer.py tests/stream_app/test_processor.py -k "equal or batched"

echo "gpu-check: short bench on cuda"
out=$(mktemp -d)
timeout 150 "$PY" -m stream_app bench --device cuda --tracks 2 --seconds 30 --concurrency 4 \
    --realtime-seconds 12 --memory-tracks 4 --profile-seconds 30 --json > "$out/bench.json"
"$PY" - "$out/bench.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
dev = r["machine"]["device"]
assert dev.startswith("cuda"), f"bench ran on {dev}, not cuda"
print(f"gpu-check: bench on {dev}: offline {r['offline']['audio_s_per_s']:.0f}x real time, "
      f"streaming {r['streaming']['audio_s_per_s']:.0f}x, latency p50 {r['latency']['p50_s']} s "
      f"p99 {r['latency']['p99_s']} s")
PYEOF
echo "gpu-check: passed"
