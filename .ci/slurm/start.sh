#!/usr/bin/env bash
# A real one-node SLURM cluster for tests/test_slurm.py (Debian 12: slurm-wlm 22.05 + munge, with
# slurmdbd and a private MariaDB so that `sacct` works), started without systemd, as root.
#   bash .ci/slurm/start.sh      # install what is missing, configure, start, wait until idle
#   bash .ci/slurm/stop.sh       # stop every daemon this script started (by PID file)
# Idempotent: daemons already running are left alone (restarted only if their config changed).
#
# Knobs (environment):
#   LOTTERY_SLURM_PARTITION=debug    the partition to create (tests read the same variable)
#   LOTTERY_SLURM_ACCOUNTING=1       1: slurmdbd + MariaDB, so `sacct` works. Keep it: without sacct
#                                    submitit waits forever for a job that died without a result.
#   LOTTERY_SLURM_DB_PORT=3307       the private MariaDB's TCP port on 127.0.0.1
#   LOTTERY_SLURM_TIMEOUT=120        seconds to wait for each daemon to become ready
# Jobs run as root; no memory enforcement (proctrack/linuxproc, task/none). Logs: /var/log/lottery-slurm.
set -euo pipefail

PARTITION=${LOTTERY_SLURM_PARTITION:-debug}
ACCOUNTING=${LOTTERY_SLURM_ACCOUNTING:-1}
DB_PORT=${LOTTERY_SLURM_DB_PORT:-3307}
TIMEOUT=${LOTTERY_SLURM_TIMEOUT:-120}

CONF=/etc/slurm                      # where the SLURM clients (sinfo, sbatch, sacct) look
RUN=/run/lottery-slurm               # PID files and the MariaDB socket
LOGS=/var/log/lottery-slurm
STATE=/var/lib/lottery-slurm         # controller state, slurmd spool, the accounting database
DB_DATA=$STATE/mysql
DB_SOCKET=$RUN/mariadbd.sock
DB_NAME=slurm_acct_db DB_USER=slurm DB_PASS=lottery-ci
MUNGE_PID=/run/munge/munged.pid

started=$SECONDS
say() { printf '[slurm start +%3ds] %s\n' $((SECONDS - started)) "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (the daemons and the jobs run as root)"

# running PIDFILE NAME: the PID file names a live, non-zombie process called NAME
running() {
  local pid
  pid=$(tr -dc '0-9' 2>/dev/null < "$1") || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}
# stop_daemon PIDFILE NAME: TERM it and wait until it is gone
stop_daemon() {
  running "$1" "$2" || return 0
  kill -TERM "$(tr -dc '0-9' < "$1")" 2>/dev/null || true
  local deadline=$((SECONDS + TIMEOUT))
  while running "$1" "$2"; do [ $SECONDS -lt $deadline ] || fail "$2 did not stop"; sleep 0.2; done
}
# wait_until WHAT COMMAND...: retry COMMAND every 0.2 s until it succeeds or TIMEOUT passes
wait_until() {
  local what=$1 deadline=$((SECONDS + TIMEOUT)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "no $what after ${TIMEOUT}s (logs: $LOGS)"
    sleep 0.2
  done
}
# write_if_changed FILE CONTENT: true (0) if FILE was (re)written
write_if_changed() {
  [ "$(cat "$1" 2>/dev/null)" != "$2" ] || return 1
  printf '%s\n' "$2" > "$1"
}

# ----- packages (Debian's; postinst must not start the services: we start them below) -----
packages=(munge slurmctld slurmd slurm-client)
[ "$ACCOUNTING" = 1 ] && packages+=(slurmdbd slurm-wlm-mysql-plugin mariadb-server)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

host=$(hostname -s)
getent hosts "$host" >/dev/null || { say "adding $host to /etc/hosts"; echo "127.0.0.1 $host" >> /etc/hosts; }
mkdir -p "$CONF" "$RUN" "$LOGS" "$STATE/ctld" "$STATE/slurmd" /run/munge
chown munge:munge /run/munge

# ----- munge -----
[ -s /etc/munge/munge.key ] || { say "creating the munge key"; mungekey --create --keyfile=/etc/munge/munge.key; }
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
if ! running "$MUNGE_PID" munged; then
  say "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID"
fi
wait_until "munge" sh -c 'munge -n | unmunge'

# ----- slurm.conf: this node as slurmd sees it (a mismatch would drain it) -----
read -r cpus sockets cores threads memory < <(slurmd -C | head -1 | tr ' ' '\n' | awk -F= '
  $1=="CPUs"{c=$2} $1=="SocketsPerBoard"{s=$2} $1=="CoresPerSocket"{k=$2} $1=="ThreadsPerCore"{t=$2}
  $1=="RealMemory"{m=$2} END{print c, s, k, t, m}')
memory=$((memory * 9 / 10))   # below what slurmd detects, or the node is marked invalid
if [ "$ACCOUNTING" = 1 ]; then
  accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  accounting="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
slurm_conf="# written by bert-lottery .ci/slurm/start.sh: one node, no systemd, no cgroups
ClusterName=lottery
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
$accounting
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
slurm_conf_changed=0
write_if_changed "$CONF/slurm.conf" "$slurm_conf" && slurm_conf_changed=1

# ----- accounting: a private MariaDB (own data folder, socket and port) and slurmdbd -----
if [ "$ACCOUNTING" = 1 ]; then
  chown mysql "$RUN"
  if [ ! -d "$DB_DATA/mysql" ]; then
    say "creating the accounting database in $DB_DATA"
    mkdir -p "$DB_DATA" && chown mysql:mysql "$DB_DATA"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DATA" --skip-test-db \
      --auth-root-authentication-method=socket >"$LOGS/mariadb-install.log" 2>&1 \
      || fail "mariadb-install-db failed: $LOGS/mariadb-install.log"
  fi
  if ! running "$RUN/mariadbd.pid" mariadbd; then
    say "starting mariadbd on 127.0.0.1:$DB_PORT"
    touch "$LOGS/mariadb.log" && chown mysql "$LOGS/mariadb.log"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DB_DATA" --socket="$DB_SOCKET" \
      --pid-file="$RUN/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
      --log-error="$LOGS/mariadb.log" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
      </dev/null >/dev/null 2>&1 &
  fi
  wait_until "mariadbd" mariadb-admin --no-defaults --socket="$DB_SOCKET" -uroot ping
  mariadb --no-defaults --socket="$DB_SOCKET" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
SQL
  dbd_conf="AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME"
  if write_if_changed "$CONF/slurmdbd.conf" "$dbd_conf" && running "$RUN/slurmdbd.pid" slurmdbd; then
    say "slurmdbd.conf changed: restarting slurmdbd"
    stop_daemon "$RUN/slurmdbd.pid" slurmdbd
  fi
  chmod 0600 "$CONF/slurmdbd.conf"
  running "$RUN/slurmdbd.pid" slurmdbd || { say "starting slurmdbd"; slurmdbd; }
  wait_until "slurmdbd" sacctmgr -n -P show cluster format=cluster
fi

# ----- slurmctld and slurmd -----
if [ "$slurm_conf_changed" = 1 ]; then
  for daemon in slurmd slurmctld; do
    running "$RUN/$daemon.pid" $daemon && { say "slurm.conf changed: restarting $daemon"; stop_daemon "$RUN/$daemon.pid" $daemon; }
  done
fi
running "$RUN/slurmctld.pid" slurmctld || { say "starting slurmctld"; slurmctld; }
wait_until "slurmctld" scontrol ping
slurmd_started_at=0
if ! running "$RUN/slurmd.pid" slurmd; then
  say "starting slurmd"
  slurmd_started_at=$(date +%s)
  slurmd
fi

# The node is ready once slurmctld has a registration from the slurmd started above.
registered() {
  local at
  at=$(scontrol show node -o "$host" 2>/dev/null | tr ' ' '\n' | sed -n 's/^SlurmdStartTime=//p')
  [ -n "$at" ] && [ "$at" != None ] && [ "$(date -d "$at" +%s)" -ge "$slurmd_started_at" ]
}
deadline=$((SECONDS + TIMEOUT)) resumed=0
while :; do
  state=$(sinfo -h -N -n "$host" -o %t 2>/dev/null || true)
  case "$state" in
    idle|mix|alloc|comp) registered && break ;;
    drain*|drng*|down*|fail*)
      [ $resumed = 1 ] || { say "node is '$state': resuming it"; scontrol update nodename="$host" state=resume || true; resumed=1; } ;;
  esac
  [ $SECONDS -lt $deadline ] || fail "node $host not ready (state '$state'); see $LOGS/slurmd.log"
  sleep 0.2
done
if [ "$ACCOUNTING" = 1 ]; then
  wait_until "cluster in slurmdbd" sh -c "sacctmgr -n -P show cluster format=cluster | grep -qx lottery"
  wait_until "sacct" sacct -n -X -j 1
fi
say "ready: node $host ($cpus CPUs, $memory MB), partition '$PARTITION', accounting=$ACCOUNTING"
