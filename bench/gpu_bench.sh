#!/usr/bin/env bash
# The scoring benchmark on a lent GPU machine, in one call (docs/scoring.md, "On a lent GPU machine").
#
# That machine has torch and transformers but none of our other dependencies and no network: carry pydantic's
# wheels in .whl/ (the download command is in docs/scoring.md). The model is SmolLM2-135M's shape with random
# weights (bench/smollm2-135m/config.json): timing does not depend on the weights, and the GGUF stays here.
#
#   bash bench/gpu_bench.sh                      # writes $OUT (or ./bench-out) /scoring.txt, scoring.json, env.txt
#   BENCH_DEVICE=cpu bash bench/gpu_bench.sh --c 2 --dtype bf16 --queries 1 --repeats 1 --rounds 1   # dry run
#
# Extra arguments go to bench/bench_scoring.py after the defaults (the last value of an option wins).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench-out}"
mkdir -p "$out"
if [ -d .whl ] && ! python3 -c "import pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sami-site \
    .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/sami-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 - <<'PY' 2>&1 | tee "$out/env.txt"
import platform, torch, transformers, pydantic
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__,
      "pydantic", pydantic.VERSION)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
PY
python3 bench/bench_scoring.py --device "${BENCH_DEVICE:-cuda}" --random-init --model bench/smollm2-135m \
  --queries 8 --c 2 4 --dtype bf16 fp32 --variants bare packed --repeats 5 --warmup 2 --rounds 2 \
  --json "$out/scoring.json" "$@" 2>&1 | tee "$out/scoring.txt"
