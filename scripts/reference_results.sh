#!/usr/bin/env bash
# Train the reference sweeps committed in results/ (2-core CPU: digits and mnist1d only; about
# 2-3 h, the ResNet and ViT sweeps about 45 min of it), then draw their reports. Every sweep runs
# with seed=auto: a pilot of 3 seeds, then seeds added until its comparisons against the
# baseline are decided or MAX_SEEDS (default 10) is reached. Each experiment's grid and expected
# outcome is in its header: regbench/conf/experiment/<name>.yaml. Already-completed cells are
# skipped (resume), so an interrupted call can simply be repeated.
#   scripts/reference_results.sh [experiment ...]     (default: the list below)
set -euo pipefail
cd "$(dirname "$0")/.."
REGBENCH=${REGBENCH:-.venv/bin/regbench}
MAX_SEEDS=${MAX_SEEDS:-10}
EXPERIMENTS=("$@")
if [ ${#EXPERIMENTS[@]} -eq 0 ]; then
  EXPERIMENTS=(mlp_dropout dropout_types cnn_spatialdrop cnn_dropblock dropconnect_vs_dropout l2_vs_adamw
               dropout_before_bn mc_dropout_uncertainty l1_sparsity max_norm batchnorm_vs_dropout per_layer_rates
               alpha_selu augment_vs_dropout mixup_cutmix forgot_eval resnet_drop_path resnet_dropout_types
               vit_regularizers resnet_bn_dropout_augment)
fi
for exp in "${EXPERIMENTS[@]}"; do
  echo "== $exp"
  # one torch thread per run (fastest for these small models on 2 cores); the default launcher
  # stacks the cells that share a structure
  "$REGBENCH" run -m "+experiment=$exp" results_dir=results "sweep_name=$exp" trainer.progress=false report=false \
    trainer.threads=1 seed=auto "hydra.sweeper.max_seeds=$MAX_SEEDS"
done
scripts/make_figures.sh
