#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one short script for a borrowed GPU machine.
#
#   bash bench/device_checks.sh quick OUT      # ~1 min: bf16 through every structured stage, DDP on one GPU, bench smoke
#   bash bench/device_checks.sh protocol OUT   # the protocol sweep: TASKS x SEEDS x {paper, clean}, structured
#   bash bench/device_checks.sh bench OUT      # the speed benchmark on the GPU (bf16)
#   bash bench/device_checks.sh packing OUT    # ~3 min: training throughput of K = 1, 4, 8, 16 jobs at once on the GPU
#                                              # (bench/packing.py; its packing.json makes jobs_per_device=auto work)
#
# Environment: MODEL (a BERT-layout model folder; default the packaged MiniLM), GLUE_DIR (as always),
# TASKS ("rte mrpc stsb cola"), SEEDS ("1337 42 86 71 166"), JOBS_PER_GPU (protocol: experiments at once on
# the GPU, hydra/launcher=pack's jobs_per_device; 12), DEADLINE_S (protocol: seconds the sweep may take
# before unfinished jobs are stopped; 520), PACKING_ARGS (packing: more options of python -m bench.packing),
# PYTHON (python3). A dry run of the script itself on a CPU:
#   TRAINER=cpu DDP_TRAINER=ddp_sim BENCH_DEVICE=cpu MODEL_OVERRIDES=model=tiny EXTRA=debug=fast ...
# Everything under OUT is small: run folders are packed into tarballs without model weights,
# checkpoints or tokenizers. Jobs are the pipeline's own, idempotent: the fine-tune of a (task, seed)
# is shared by its two protocols (a file lock), and a rerun only does what is missing.
set -uo pipefail
mode=${1:?usage: bench/device_checks.sh quick|protocol|bench|packing OUT}
out=$(mkdir -p "${2:?usage: bench/device_checks.sh quick|protocol|bench|packing OUT}" && cd "$2" && pwd)
py=${PYTHON:-python3}
work=${WORK:-/tmp/lottery-device}
model=(${MODEL_OVERRIDES:-model=minilm ${MODEL:+model.name_or_path=$MODEL}} ${EXTRA:-})
trainer=${TRAINER:-gpu}
bench_device=${BENCH_DEVICE:-cuda}
export PYTHONUNBUFFERED=1 WANDB_MODE=offline OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$work/logs"

pack() {  # pack NAME FOLDER...: results without weights, checkpoints or the tokenised cache
  tar czf "$out/$1.tar.gz" --exclude='*.safetensors' --exclude='*.ckpt' --exclude='step_*.npz' \
    --exclude='tokenizer.json' --exclude='vocab.txt' --exclude='.cache' -C "$work" "${@:2}" 2>/dev/null || true
}

lottery() {  # lottery LOG ARGS...: one run, its output in logs/LOG
  local log=$1; shift
  echo "[device] python -m lottery $*" >>"$work/logs/commands.txt"
  $py -m lottery "${model[@]}" paths.root="${RUNS:-$work/runs}" trainer.enable_progress_bar=false "$@" \
    >"$work/logs/$log.log" 2>&1
  local rc=$?
  echo "[device] $log: exit $rc at $SECONDS s" | tee -a "$work/logs/commands.txt"
  return $rc
}

environment() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py -c 'import torch, transformers, pytorch_lightning as pl; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "lightning", pl.__version__, torch.cuda.get_device_name())'
  } 2>&1 | tee "$out/environment.txt"
}

quick() {
  environment
  RUNS=$work/quick/gpu lottery quick_bf16 experiment=structured task=stsb trainer=$trainer debug=fast
  RUNS=$work/quick/ddp lottery quick_ddp task=stsb trainer=${DDP_TRAINER:-ddp} trainer.devices=1 debug=fast
  $py -m bench --quick --device $bench_device --out "$work/quick/bench" >"$work/logs/quick_bench.log" 2>&1
  echo "[device] quick bench: exit $?" | tee -a "$work/logs/commands.txt"
  pack quick quick logs
}

protocol() {
  environment
  # One sweep through the pack launcher: JOBS_PER_GPU experiments at a time on the GPU, each its own
  # process, under CUDA MPS when it starts (the sweep's log says whether it did). The two protocols of
  # a (task, seed) are neighbours in the sweep and share its fine-tune (a file lock); the first seeds
  # come first. At the deadline `timeout` stops the sweep (the launcher stops its jobs and MPS); a
  # second call finishes what is left, reusing every finished stage.
  local csv_tasks csv_seeds
  csv_tasks=$(echo ${TASKS:-rte mrpc stsb cola} | tr ' ' ',')
  csv_seeds=$(echo ${SEEDS:-1337 42 86 71 166} | tr ' ' ',')
  local args=(-m hydra/launcher=pack hydra.launcher.jobs_per_device=${JOBS_PER_GPU:-${WORKERS:-12}}
              "${model[@]}" paths.root="$work/runs" trainer.enable_progress_bar=false experiment=structured
              trainer=$trainer seed=$csv_seeds task=$csv_tasks protocol=paper,clean)
  echo "[device] python -m lottery ${args[*]}" >>"$work/logs/commands.txt"
  timeout --kill-after=60 "${DEADLINE_S:-520}" $py -m lottery "${args[@]}" >"$work/logs/protocol_sweep.log" 2>&1
  local rc=$?
  [ $rc = 124 ] && rc="$rc (the deadline: unfinished jobs stopped; call again to finish them)"
  echo "[device] protocol sweep: exit $rc at $SECONDS s" | tee -a "$work/logs/commands.txt"
  grep -E "Packing|CUDA MPS|ended after" "$work/logs/protocol_sweep.log" | tee -a "$work/logs/commands.txt"
  (cd "$work" && find runs -name results.json | sort) | tee -a "$work/logs/commands.txt"
  pack protocol runs
  pack logs logs
  return 0
}

bench() {
  environment
  timeout 300 $py -m bench --device $bench_device ${MODEL:+--model "$MODEL"} ${BENCH_ARGS:-} --out "$out" \
    >"$work/logs/bench.log" 2>&1
  echo "[device] bench: exit $?" | tee -a "$work/logs/commands.txt"
  pack logs logs
}

packing() {
  environment
  timeout 420 $py -m bench.packing --device $bench_device ${PACKING_ARGS:-} --out "$out" >"$work/logs/packing.log" 2>&1
  echo "[device] packing: exit $? ($out/packing.json: copy it to bench/results/ for jobs_per_device=auto)" \
    | tee -a "$work/logs/commands.txt"
  grep "\[bench\]" "$work/logs/packing.log" | tee -a "$work/logs/commands.txt"
  pack logs logs
}

case $mode in
  quick) quick ;;
  protocol) protocol ;;
  bench) bench ;;
  packing) packing ;;
  *) echo "unknown mode $mode: quick | protocol | bench | packing" >&2; exit 2 ;;
esac
