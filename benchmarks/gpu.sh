#!/usr/bin/env bash
# The GPU benchmark of issue #25 (benchmarks/gpu.py says what it measures): run it first whenever a GPU machine
# is at hand; at most 8 minutes on one H100. It prints one markdown table (for BENCHMARKS.md) and, where $OUT is
# set, writes it to $OUT/gpu_bench.md with the log (gpu_bench.log) and the raw records (gpu_bench.json).
#
#   bash benchmarks/gpu.sh prepare               # HERE, once (needs PyPI): wheels of petsweep's packages into
#                                                #   .gpu-wheels/ (git-ignored through .git/info/exclude)
#   device tool: run(command="bash benchmarks/gpu.sh", carry=[".gpu-wheels"], timeout_s=600)
#   bash benchmarks/gpu.sh --tiny --device cpu   # every part on tiny models, anywhere: the plumbing only
#
# The device machine reaches no network and our .venv does not travel (and holds torch's CPU build anyway).
# So the benchmark uses the machine's own Python and its CUDA torch (the image's: a version other than the
# lock's CPU build, which the table's second line reports), and the lock's versions of everything else it
# imports, carried as wheels: `prepare` runs the tiny benchmark here, lists what it imported, and downloads
# the locked version of each (pure-Python ones always; compiled ones, for CPython 3.12, only where the image
# lacks them). Here they are installed with --no-deps into a folder ahead of the image's site-packages.
# Without a GPU (and not --device cpu) it refuses in one line and exits 2, before installing anything.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${GPU_WHEELS:-.gpu-wheels}  # GPU_WHEELS: another folder of them

if [ "${1:-}" = prepare ]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  grep -qxF "/$WHEELS/" "$exclude" 2>/dev/null || echo "/$WHEELS/" >>"$exclude"
  exec .venv/bin/python benchmarks/gpu.py --prepare "$WHEELS"
fi

# The Python: $PYTHON if set; else one whose torch sees a GPU (the device image's python3); else the repo's .venv
if [ -n "${PYTHON:-}" ]; then
  py=$PYTHON
elif python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  py=python3
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi

device=cuda
for arg in "$@"; do [ "$arg" = cpu ] && device=cpu; done
"$py" benchmarks/gpu.py --check --device "$device" # one line and exit 2 where the device is missing

# petsweep's packages: the carried wheels, where this Python lacks them (not in our own .venv)
if ! "$py" -c 'import hydra, omegaconf, peft, deepspeed' 2>/dev/null && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  site=${TMPDIR:-/tmp}/gpu_bench_site
  started=$SECONDS
  "$py" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$site" "$WHEELS"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  echo "[gpu.sh] installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $site in $((SECONDS - started)) s" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# 470 s: what is left of 8 minutes after the install; a part past its own box is stopped inside gpu.py
limit=470
[ "$device" = cpu ] && limit=1800
exec timeout "$limit" "$py" benchmarks/gpu.py "$@"
