#!/usr/bin/env bash
# Stop the one-node SLURM cluster that .ci/slurm/start.sh started: cancel the jobs, then stop
# slurmd, slurmctld, slurmdbd, mariadbd and munged by the PIDs in their PID files (never by name).
#   bash .ci/slurm/stop.sh           # stop; state is kept, so job ids keep counting up
#   bash .ci/slurm/stop.sh --purge   # also delete controller state, accounting database and logs:
#                                    # job ids restart at 1, so use fresh submitit folders after it
# Idempotent: daemons that are not running are skipped.
set -uo pipefail

RUN=/run/lottery-slurm
LOGS=/var/log/lottery-slurm
STATE=/var/lib/lottery-slurm
purge=0
[ "${1:-}" = --purge ] && purge=1
say() { echo "[slurm stop] $*" >&2; }

running() {
  local pid
  pid=$(tr -dc '0-9' 2>/dev/null < "$1") || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}
stop_daemon() {  # stop_daemon PIDFILE NAME
  if ! running "$1" "$2"; then rm -f "$1"; return 0; fi
  local pid
  pid=$(tr -dc '0-9' < "$1")
  say "stopping $2 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do running "$1" "$2" || break; sleep 0.2; done
  if running "$1" "$2"; then say "$2 ignored TERM: killing it"; kill -KILL "$pid" 2>/dev/null; sleep 0.5; fi
  rm -f "$1"
}

# Cancel the jobs first so that no job step outlives slurmd.
if running "$RUN/slurmctld.pid" slurmctld; then
  jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// }" ]; then
    say "cancelling jobs $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 75); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

stop_daemon "$RUN/slurmd.pid" slurmd
stop_daemon "$RUN/slurmctld.pid" slurmctld
stop_daemon "$RUN/slurmdbd.pid" slurmdbd
stop_daemon "$RUN/mariadbd.pid" mariadbd
stop_daemon /run/munge/munged.pid munged

if [ $purge = 1 ]; then
  say "purging $STATE and $LOGS"
  rm -rf "$STATE" "$LOGS"
fi
say "stopped"
