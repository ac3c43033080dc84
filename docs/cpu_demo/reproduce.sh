#!/usr/bin/env bash
# Reproduces docs/cpu_demo from scratch on a CPU (about 40 minutes on 2 cores, measured: 37 min of sweeps for
# 213 runs, 4.5 min of transfer, under 1 min of analysis; docs/cpu_demo/README.md): the demo sweep (four
# presets, one sweep dir), transfer evaluation both ways between BBC articles and headlines, the table and the
# figures.
# Re-running it resumes: COMPLETED runs and existing transfer scores are kept, not recomputed.
# Usage: ./install.sh && docs/cpu_demo/reproduce.sh [runs_root]      (default runs_root: runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RUNS=${1:-runs}
OUT=docs/cpu_demo
if [ "${DEMO_STEPS:-all}" != analysis ]; then
  for preset in cpu_demo_lora cpu_demo_baselines cpu_demo_headlines cpu_demo_apet; do
    .venv/bin/python run.py -m +sweep="$preset" paths.runs_root="$RUNS"
  done
fi
[ "${DEMO_STEPS:-all}" = sweep ] && exit 0
.venv/bin/petsweep transfer "$RUNS/cpu_demo" --task bbc_headlines --task bbc_news
.venv/bin/petsweep collect "$RUNS/cpu_demo" -o "$OUT/table.csv"
.venv/bin/petsweep thresholds "$OUT/table.csv" -o "$OUT/thresholds.csv"
# the article task, structured methods (APET has figures of its own below); headline-trained runs (MiniLM-L6
# only) are in the table and the transfer matrix
for kind in curves pareto gap generalization threshold convergence; do
  .venv/bin/petsweep plot "$OUT/table.csv" --kind "$kind" --where "task == 'bbc_news' and method != 'apet'" \
    -o "$OUT/$kind.png"
done
.venv/bin/petsweep plot "$OUT/table.csv" --kind transfer --where "backbone == 'minilm-l6'" -o "$OUT/transfer.png"
# APET (cpu_demo_apet): APET(X) beside X at X's budget, and every APET budget on its own curve per depth
.venv/bin/petsweep plot "$OUT/table.csv" --kind apet --where "task == 'bbc_news'" -o "$OUT/apet.png"
.venv/bin/petsweep plot "$OUT/table.csv" --kind curves --where "task == 'bbc_news' and method == 'apet'" \
  -o "$OUT/apet_curves.png"
.venv/bin/petsweep plot "$OUT/table.csv" --kind threshold \
  --where "task == 'bbc_news' and method in ['apet', 'full']" -o "$OUT/apet_threshold.png"
