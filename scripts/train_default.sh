#!/usr/bin/env bash
# Train the shipped default model and its ablations on ONE GPU, all runs side by side (the model card's recipe).
#
#   bash scripts/train_default.sh CROPDIR RUNS MINUTES [PERCEPTUAL]
#
# CROPDIR: a `depix prepare` export; RUNS: output folder; MINUTES: wall-clock budget of the reconstruction
# stage (the learning-rate schedule is spread over it); PERCEPTUAL: feature net (name or exported file).
# Stage 1 trains the aligner (STN) once; stage 2 trains, in parallel on the same GPU:
#   w32     default model candidate: U-Net base width 32, F=5 (w=2, d=5), STN, GAN
#   w64     the paper's width (13.4 M U-Net parameters), otherwise the same
#   f1      ablation: one frame (F=1, no STN)
#   nostn   ablation: F=5 without alignment
#   f9      ablation: F=9 (w=4), STN
# Every run writes RUNS/<name>/model.safetensors (fp16), log.jsonl and config.json.
set -euo pipefail
CROPS=$1
RUNS=$2
MINUTES=$3
PERC=${4:-vgg16-stlpips}
STN_MINUTES=${STN_MINUTES:-1.5}
BATCH=${BATCH:-32}
mkdir -p "$RUNS"
run() {  # name, extra flags...
    local name=$1
    shift
    python -m depixcli train "$CROPS" -o "$RUNS/$name" --stage recon --perceptual "$PERC" --batch-size "$BATCH" \
        --steps 1000000 --schedule-minutes "$MINUTES" --time-limit "$MINUTES" --workers 3 --seed 0 -q "$@" \
        >"$RUNS/$name.out" 2>&1
}
python -m depixcli train "$CROPS" -o "$RUNS/stn" --stage stn --stn-steps 100000 --schedule-minutes "$STN_MINUTES" \
    --time-limit "$STN_MINUTES" --batch-size 64 --workers 3 -q >"$RUNS/stn.out" 2>&1
run w32 --width 32 --init-stn "$RUNS/stn" &
run w64 --width 64 --init-stn "$RUNS/stn" &
run f1 --width 32 --window 0 --no-stn &
run nostn --width 32 --no-stn &
run f9 --width 32 --window 4 --init-stn "$RUNS/stn" &
wait
echo "all runs finished"
