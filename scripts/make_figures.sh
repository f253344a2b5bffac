#!/usr/bin/env bash
# Regenerate every committed figure and report in results/ from the committed run CSVs alone
# (config.yaml + metrics.csv + summary.json of each run); no training happens here.
#   scripts/make_figures.sh            (or: make figures)
set -euo pipefail
cd "$(dirname "$0")/.."
REGBENCH=${REGBENCH:-.venv/bin/regbench}
shopt -s nullglob
found=0
for sweep in results/*/; do
  sweep=${sweep%/}
  [ -n "$(find "$sweep" -name metrics.csv -print -quit)" ] || continue  # e.g. results/bench
  found=1
  "$REGBENCH" report "$sweep" --out "$sweep/report"
done
[ "$found" = 1 ] || { echo "no run folders under results/: run scripts/reference_results.sh first" >&2; exit 2; }
