#!/usr/bin/env bash
# The GPU speed check: bench/bench_gpu.py on the SmolLM2-135M and ~1.5B shapes, all three parts
# (training vs HF Trainer, constrained decoding vs HF generate, objectives vs SFT). About 3-4
# minutes on one H200 (an earlier version of it ran in 170 s). Run it inside the folder made by
# bench/gpu_prepare.sh (or a checkout that has assets/tokenizer and assets/ml-100k); results go to
# $OUT (default bench/results): gpu.json, gpu_log.txt, nvidia-smi.txt. The 135M shape is also
# timed with train.compile = true (the compilation adds 1-2 minutes; `--compile ""` skips it).
# Extra arguments go to bench_gpu.py after these, e.g. `--parts train,decode` to skip the
# objectives.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results}
mkdir -p "$out"
python=${PYTHON:-python3}
if compgen -G "whl/*.whl" >/dev/null; then  # pure-Python dependencies the machine may lack
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/recbias-site whl/*.whl
  export PYTHONPATH=/tmp/recbias-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export RECBIAS_CACHE=${RECBIAS_CACHE:-/tmp/recbias-cache}  # the prepared ML-100K lands here
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
  >"$out/nvidia-smi.txt" 2>&1 || true
commit=$(cat COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)
"$python" bench/bench_gpu.py --tokenizer assets/tokenizer --ml100k assets/ml-100k \
  --commit "$commit" --out "$out/gpu.json" --compile smollm2-135m "$@" 2>&1 | tee "$out/gpu_log.txt"
