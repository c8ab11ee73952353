#!/usr/bin/env bash
# The README's test command: set up everything on a fresh machine, then run the whole test suite
# (fast unit tests and the slower integration tests, marked `slow`). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Headless Chromium renders the HTML report in one test; install it where we may (Debian/Ubuntu as root).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "warning: could not install chromium; the report screenshot test will be skipped" >&2
fi
# shellcheck disable=SC1091
. "${SAMI_KIT_VENV:-.venv}/bin/activate"
export LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
set +e
python -m pytest -q "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$status"
