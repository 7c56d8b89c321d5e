#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one short script for a borrowed GPU machine.
#
#   bash bench/device_checks.sh quick OUT      # ~1 min: bf16 through every structured stage, DDP on one GPU, bench smoke
#   bash bench/device_checks.sh protocol OUT   # the protocol sweep: TASKS x SEEDS x {paper, clean}, structured
#   bash bench/device_checks.sh bench OUT      # issue 17's GPU numbers (bf16), ~7 min: fine-tune / plain loop on
#                                              # MiniLM and a random bert-base-sized BERT, matrix-rate use of a
#                                              # bert-base-sized fine-tune solo and packed K = 1, 4, 8, 16 (MPS if it
#                                              # starts), the MiniLM STS-B structured experiment end to end; writes
#                                              # OUT/device_bench.json and .md (+ environment.txt, logs.tar.gz)
#
# Environment: MODEL (a BERT-layout model folder; default the packaged MiniLM), GLUE_DIR (as always),
# TASKS ("rte mrpc stsb cola"), SEEDS ("1337 42 86 71 166"), WORKERS (parallel (task, seed) jobs on the one GPU; 12),
# DEADLINE_S (protocol: seconds the sweep may take before unfinished jobs are stopped; 520),
# PYTHON (python3). A dry run of the script itself on a CPU:
#   TRAINER=cpu DDP_TRAINER=ddp_sim BENCH_DEVICE=cpu MODEL_OVERRIDES=model=tiny EXTRA=debug=fast ...
# and for bench mode also: FINE_TUNE_MODELS=tiny PACK_SIZES=tiny PACK_KS="1 2" PACK_SECONDS=5 PACK_STARTUP_S=30 BENCH_REPEATS=1
# (bench mode's other knobs: FINE_TUNE_EXAMPLES ("960,256"), FINE_TUNE_S (200), PACK_S (130), E2E_S (150): the
# timeouts of its three parts).
# Everything under OUT is small: run folders are packed into tarballs without model weights,
# checkpoints or tokenizers. Jobs are the pipeline's own, idempotent: the fine-tune of a (task, seed)
# is shared by its two protocols (a file lock), and a rerun only does what is missing.
set -uo pipefail
mode=${1:?usage: bench/device_checks.sh quick|protocol|bench OUT}
out=$(mkdir -p "${2:?usage: bench/device_checks.sh quick|protocol|bench OUT}" && cd "$2" && pwd)
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
  # Many small processes share the GPU: MPS lets their kernels run side by side (if it starts here).
  if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d 2>>"$work/logs/mps.log"; then
    echo "[device] MPS on" | tee -a "$work/logs/commands.txt"
  else
    echo "[device] MPS not available: processes time-slice the GPU" | tee -a "$work/logs/commands.txt"
  fi
  local deadline=$(( $(date +%s) + ${DEADLINE_S:-520} ))
  # One job per (seed, task): its paper experiment, then its clean one on the same fine-tune, so a
  # job stopped by the deadline leaves only complete pairs behind; the first seeds first.
  for seed in ${SEEDS:-1337 42 86 71 166}; do
    for task in ${TASKS:-rte mrpc stsb cola}; do echo "$task $seed"; done
  done >"$work/jobs.txt"
  export -f lottery; export work py trainer deadline; export MODEL_ARRAY="${model[*]}"
  xargs -P "${WORKERS:-12}" -L 1 bash -c '
    model=($MODEL_ARRAY)
    for protocol in paper clean; do
      left=$(( deadline - $(date +%s) ))
      [ "$left" -gt 30 ] || { echo "[device] skipped $0 $1 $protocol (no time left)"; exit 0; }
      timeout "$left" bash -c "$(declare -f lottery); $(declare -p model work py trainer); \
        lottery structured_$0_$1_$protocol experiment=structured trainer=$trainer task=$0 seed=$1 protocol=$protocol"
    done' <"$work/jobs.txt"
  echo "[device] sweep done after $SECONDS s" | tee -a "$work/logs/commands.txt"
  (cd "$work" && find runs -name results.json | sort) | tee -a "$work/logs/commands.txt"
  pack protocol runs
  pack logs logs
  command -v nvidia-cuda-mps-control >/dev/null && echo quit | nvidia-cuda-mps-control 2>/dev/null
  return 0
}

bench() {  # each part bounded by its own timeout; a part that fails or times out is reported as such
  environment
  local bert=$work/bert_base ks=(${PACK_KS:-1 4 8 16}) seconds=${PACK_SECONDS:-12}
  $py -m bench.packing model "$bert" --sizes ${PACK_SIZES:-bert_base} >"$work/logs/model.log" 2>&1
  echo "[device] random ${PACK_SIZES:-bert_base}-sized BERT written: exit $? at $SECONDS s" | tee -a "$work/logs/commands.txt"

  # 1. The project's fine-tune / a plain PyTorch loop (bench.fit_overhead), before MPS starts.
  timeout ${FINE_TUNE_S:-200} $py -m bench --device $bench_device --only-fine-tunes --repeats ${BENCH_REPEATS:-2} \
    --fine-tune-models "${FINE_TUNE_MODELS:-minilm,$bert}" --fine-tune-examples "${FINE_TUNE_EXAMPLES:-960,256}" \
    --out "$work/fine_tunes" >"$work/logs/fine_tunes.log" 2>&1
  echo "[device] fine-tunes vs plain loop: exit $? at $SECONDS s" | tee -a "$work/logs/commands.txt"

  # 2. Matrix-rate use, solo and packed: ${ks[-1]} workers start together, phase p has K_p of them training.
  local mps=0
  if [ "$bench_device" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null \
      && nvidia-cuda-mps-control -d 2>>"$work/logs/mps.log"; then mps=1; fi
  echo "[device] packing with MPS: $mps" | tee -a "$work/logs/commands.txt"
  local start=$(( $(date +%s) + ${PACK_STARTUP_S:-45} )) pids=() kslist
  mkdir -p "$work/pack"
  kslist=$(IFS=,; echo "${ks[*]}")
  for ((w = 0; w < ${ks[-1]}; w++)); do
    CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} timeout ${PACK_S:-130} $py -m bench.packing worker --model "$bert" \
      --index $w --start $start --seconds $seconds --ks "$kslist" --out "$work/pack/worker$w.json" \
      --device $bench_device >"$work/logs/pack_worker$w.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  $py -m bench.packing report --ks "$kslist" --seconds $seconds --out "$work/packing.json" "$work"/pack/worker*.json \
    2>&1 | tee -a "$work/logs/commands.txt"
  [ $mps = 1 ] && echo quit | nvidia-cuda-mps-control 2>/dev/null
  echo "[device] packing done at $SECONDS s" | tee -a "$work/logs/commands.txt"

  # 3. The MiniLM STS-B structured experiment end to end, alone on the GPU.
  local e2e_start=$(date +%s.%N) rc
  RUNS=$work/e2e timeout ${E2E_S:-150} bash -c "$(declare -f lottery); $(declare -p model work py); \
    lottery e2e experiment=structured task=stsb trainer=$trainer"
  rc=$?
  local e2e_s=$(awk "BEGIN { print $(date +%s.%N) - $e2e_start }")
  echo "[device] structured experiment: exit $rc after $e2e_s s" | tee -a "$work/logs/commands.txt"

  $py -m bench.device_summary --out "$out" --fine-tunes "$work/fine_tunes/bench.json" --packing "$work/packing.json" \
    --e2e-seconds "$e2e_s" --e2e-exit $rc --e2e-timeout ${E2E_S:-150} --e2e-root "$work/e2e" \
    --environment "$out/environment.txt" >"$work/logs/summary.log" 2>&1
  echo "[device] summary: exit $? at $SECONDS s" | tee -a "$work/logs/commands.txt"
  cat "$out/device_bench.md" 2>/dev/null
  pack logs logs fine_tunes packing.json e2e
}

case $mode in
  quick) quick ;;
  protocol) protocol ;;
  bench) bench ;;
  *) echo "unknown mode $mode: quick | protocol | bench" >&2; exit 2 ;;
esac
