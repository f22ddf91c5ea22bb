#!/usr/bin/env bash
# GPU tests + full-size benchmark on one H100/H200, no network, < 6 minutes.
# Run through the device tool from the repo root, carrying .whl (wheels the GPU image lacks):
#   bash bench/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRANSFORMERS_VERBOSITY=error
OUT=${OUT:-$(mktemp -d)}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD:$PWD/adapters:${PYTHONPATH:-}"
export OMNIGUARD_TINY_CACHE=/tmp/omniguard-tiny
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
echo "== GPU tests"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/gpu -x -s 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
BENCH="python3 -m omniguard_plugins.cli bench --random-weights --arch omniguard-7b --device cuda"
echo "== fast paths, each turned off in the same run (c32; decode-graphs is off by default, on here)"
timeout 120 $BENCH --workloads text,image --modes score,critique --concurrency 32 --requests 32 --no-naive \
  --critique-tokens 128 --with decode-graphs --without prefix-cache,caller-prepare,decode-graphs,media-cache --budget-s 85 \
  --json "$OUT/ablation.json" --markdown "$OUT/ablation.md" 2>&1 | tee "$OUT/ablation.log"
echo "== benchmark (default fast paths)"
timeout 150 $BENCH --workloads text,image,audio --modes verdict,score,critique --concurrency 1,32 --requests 64 \
  --naive-requests 2 --critique-tokens 128 --budget-s 110 --json "$OUT/bench.json" --markdown "$OUT/bench.md" 2>&1 | tee "$OUT/bench.log"
# $OUT/bench.md and $OUT/ablation.md are ready-made sections for bench/RESULTS.md (card, date, tables)
