#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one short script for a borrowed GPU machine.
#
#   bash bench/device_checks.sh quick OUT   # ~1 min: bf16 pipeline, DDP on one GPU, bench smoke
#   bash bench/device_checks.sh full OUT    # speed benchmark on the GPU, then the MiniLM mini-sweep:
#                                           # STS-B and MRPC x {structured, magnitude} x SEEDS
#
# Environment: MODEL (a BERT-layout model folder; default the packaged MiniLM), GLUE_DIR (as
# always), DEADLINE_S (full: seconds the sweep may take before unfinished jobs are stopped; 420),
# SEEDS (full; "1337 42 86"), PYTHON (python3). For a dry run of the script itself on a CPU:
#   TRAINER=cpu DDP_TRAINER=ddp_sim BENCH_DEVICE=cpu BENCH_ARGS=--quick MODEL_OVERRIDES=model=tiny EXTRA=debug=fast
# Everything under OUT is small: run folders are packed into tarballs without model weights,
# checkpoints or tokenizers.
set -uo pipefail
mode=${1:?usage: bench/device_checks.sh quick|full OUT}
out=$(mkdir -p "${2:?usage: bench/device_checks.sh quick|full OUT}" && cd "$2" && pwd)
py=${PYTHON:-python3}
work=${WORK:-/tmp/lottery-device}
seeds=${SEEDS:-1337 42 86}
model=(${MODEL_OVERRIDES:-model=minilm ${MODEL:+model.name_or_path=$MODEL}} ${EXTRA:-})
trainer=${TRAINER:-gpu}
bench_device=${BENCH_DEVICE:-cuda}
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
mkdir -p "$work/logs"

pack() {  # pack NAME FOLDER...: results without weights, checkpoints or the tokenised cache
  tar czf "$out/$1.tar.gz" --exclude='*.safetensors' --exclude='*.ckpt' --exclude='step_*.npz' \
    --exclude='tokenizer.json' --exclude='vocab.txt' --exclude='cache' -C "$work" "${@:2}" 2>/dev/null || true
}

lottery() {  # lottery LOG ARGS...: one run, its output in logs/LOG
  local log=$1; shift
  echo "[device] python -m lottery $*" | tee -a "$work/logs/commands.txt"
  $py -m lottery "${model[@]}" paths.root="${RUNS:-$work/runs}" paths.cache_dir="$work/cache" \
    trainer.enable_progress_bar=false "$@" >"$work/logs/$log.log" 2>&1
  local rc=$?
  echo "[device] $log: exit $rc" | tee -a "$work/logs/commands.txt"
  return $rc
}

environment() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py -c 'import torch, transformers, pytorch_lightning as pl; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "lightning", pl.__version__, torch.cuda.get_device_name())'
  } 2>&1 | tee "$out/environment.txt"
}

quick() {
  environment
  # bf16-mixed through every structured stage (search, tickets, pruned, retrained) on a few batches
  RUNS=$work/quick/gpu lottery quick_bf16 experiment=structured task=stsb trainer=$trainer debug=fast
  # DDP strategy on one GPU (fine-tune; dev metrics must match the plain GPU run's closely)
  RUNS=$work/quick/ddp lottery quick_ddp task=stsb trainer=${DDP_TRAINER:-ddp} trainer.devices=1 debug=fast
  $py - "$work/quick" <<'EOF' 2>&1 | tee -a "$work/logs/commands.txt"
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
for name in ("gpu", "ddp"):
    for path in sorted((root / name).glob("*/stsb/*/finetune/metrics.json")):
        print(name, path.parent.parent.name, json.loads(path.read_text()))
EOF
  $py -m bench --quick --device $bench_device --out "$work/quick/bench" >"$work/logs/quick_bench.log" 2>&1
  echo "[device] quick bench: exit $?" | tee -a "$work/logs/commands.txt"
  pack quick quick logs
}

full() {
  environment
  local start=$SECONDS
  timeout 200 $py -m bench --device $bench_device ${MODEL:+--model "$MODEL"} ${BENCH_ARGS:-} --out "$out" >"$work/logs/bench.log" 2>&1
  echo "[device] bench: exit $? after $((SECONDS - start)) s" | tee -a "$work/logs/commands.txt"
  local limit=$(( ${DEADLINE_S:-420} - (SECONDS - start) ))
  # The mini-sweep: each (task, seed) fine-tune is shared by its jobs (file lock), all on one GPU.
  local pids=()
  for seed in $seeds; do
    for task in stsb mrpc; do
      for experiment in structured magnitude; do
        timeout "$limit" bash -c "$(declare -f lottery); $(declare -p model work py trainer); \
          lottery ${experiment}_${task}_$seed experiment=$experiment trainer=$trainer task=$task seed=$seed" &
        pids+=($!)
      done
    done
  done
  wait "${pids[@]}"
  echo "[device] sweep done after $((SECONDS - start)) s" | tee -a "$work/logs/commands.txt"
  (cd "$work" && find runs -name results.json | sort) | tee -a "$work/logs/commands.txt"
  (cd "$work" && pack structured runs/*/*/*/structured_* runs/*/*/*/finetune && pack magnitude runs/*/*/*/magnitude_*)
  pack logs logs
}

case $mode in
  quick) quick ;;
  full) full ;;
  *) echo "unknown mode $mode: quick | full" >&2; exit 2 ;;
esac
