#!/usr/bin/env bash
# The README's demo: install sami-kit (scripts/install.sh), then run a complete 2-iteration SAMI run offline on the
# embedded SmolLM2-135M-Instruct with the shipped demo posts (`sami-kit run --preset demo`, 8-12 min on 2 CPU cores).
# Extra arguments go to `sami-kit run`, e.g.  bash scripts/demo.sh -o iterations=1
# The run directory is runs/demo-<timestamp> (override with SAMI_KIT_DEMO_DIR); summary.md there has the results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck disable=SC1091
. "${SAMI_KIT_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN_DIR="${SAMI_KIT_DEMO_DIR:-runs/demo-$(date +%Y%m%d-%H%M%S)}"
start=$(date +%s)
sami-kit run --preset demo --run-dir "$RUN_DIR" "$@"
echo "demo finished in $(( $(date +%s) - start )) s; results: $RUN_DIR/summary.md"
cat "$RUN_DIR/summary.md"
