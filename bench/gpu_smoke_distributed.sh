#!/usr/bin/env bash
# CUDA/NCCL smoke test of several-process training and sharded decoding on tiny random models.
#
#   OUT=/tmp/smoke bash bench/gpu_smoke_distributed.sh     # one process per GPU (at most 2)
#
# 1. Trainer level (bench/gpu_smoke_distributed.py): parallel = none / ddp / fsdp, full and LoRA,
#    fp32 and bf16; weights and decoded lists compared with the one-process reference.
# 2. CLI level: `recbias run` under torchrun with train.parallel = fsdp, then `recbias recommend`
#    of that run, whose predictions must equal the run's own bytes.
# Results: $OUT/gpu_smoke_distributed.json, $OUT/run-fsdp/, $OUT/log.txt. Exit 0 = passed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu_smoke}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
N=$($PY -c "import torch; print(max(1, min(2, torch.cuda.device_count())))")
RUN=($PY -m torch.distributed.run --nproc_per_node "$N" --master_port 29650)
exec > >(tee "$OUT/log.txt") 2>&1
echo "processes: $N; $($PY -c 'import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())')"
start=$SECONDS
"${RUN[@]}" bench/gpu_smoke_distributed.py --out "$OUT"
$PY bench/gpu_smoke_distributed.py --make-run-inputs "$OUT/inputs"
rm -rf "$OUT/run-fsdp"
"${RUN[@]}" -m recbias.cli run "$OUT/inputs/exp.toml" --run-dir "$OUT/run-fsdp" \
  --set train.parallel=fsdp > "$OUT/run-fsdp.stdout"
grep "^| llm" "$OUT/run-fsdp/summary.md"
cp "$OUT/run-fsdp/predictions/llm.jsonl" "$OUT/llm-from-run.jsonl"
"${RUN[@]}" -m recbias.cli recommend "$OUT/inputs/exp.toml" --run-dir "$OUT/run-fsdp" > /dev/null
cmp "$OUT/llm-from-run.jsonl" "$OUT/run-fsdp/predictions/llm.jsonl"
echo "smoke test passed in $((SECONDS - start)) s"
