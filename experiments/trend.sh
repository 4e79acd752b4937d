#!/usr/bin/env bash
# Does the gap between the priors shrink as the transforms train? hyperprior and joint at
# lambda=0.013 with the ablation's CPU settings (N=M=64, batch 8, 128x128, lr 5e-4) for 4,000 steps,
# then every 1,000-step checkpoint on all 24 Kodak images through real files, into
# results/ablation/trend/<prior>_step<step>.json. About 40 minutes on a 2-core CPU.
#
#   bash experiments/trend.sh [STEPS] [LAMBDA]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-4000}
lmbda=${2:-0.013}
every=$((steps / 4))
for prior in hyperprior joint; do
  ./launch.sh train --prior="$prior" --lmbda="$lmbda" --num_filters=64 --num_latents=64 \
    --batch_size=8 --patch_size=128 --learning_rate=5e-4 --num_steps="$steps" \
    --checkpoint_every="$every" --keep_checkpoints=4 --eval_every="$every" --eval_images=8 \
    --data_dir=../shared/data/train/bsds500 --val_data_dir=../shared/data/val/bsds500 \
    --workdir="workdirs/trend/${prior}_lmbda${lmbda}"
done
checkpoints=()
for prior in hyperprior joint; do
  for step in $every $((2 * every)) $((3 * every)) "$steps"; do
    checkpoint="workdirs/trend/${prior}_lmbda${lmbda}/checkpoints/$step"
    ./launch.sh python -m jahp_jax.cli.evaluate --checkpoint="$checkpoint" \
      --data_dir=../shared/data/kodak --output="results/ablation/trend/${prior}_step$step.json"
    checkpoints+=("--checkpoint=$checkpoint")
  done
done
./launch.sh python -m experiments.rate_gap "${checkpoints[@]}" \
  --output=results/ablation/trend/rate_gap.md
